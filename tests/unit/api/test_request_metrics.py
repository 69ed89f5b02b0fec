"""The labels `/metrics` counts requests under: the route table's interaction codes and the
server's own resource types, ids and unknown names never."""

from __future__ import annotations

import pytest

from fhir_server.api.request_metrics import _route_labels, shape
from fhir_server.search.registry import build_registry

TYPES = build_registry().resource_types


@pytest.mark.parametrize(
    ("method", "path", "labels"),
    [
        ("GET", "/Patient/abc", ("read", "Patient")),
        ("GET", "/Patient/abc/_history/3", ("vread", "Patient")),
        ("GET", "/Patient/abc/_history", ("history-instance", "Patient")),
        ("GET", "/Observation", ("search-type", "Observation")),
        ("POST", "/Observation/_search", ("search-type", "Observation")),
        ("POST", "/Patient", ("create", "Patient")),
        ("PUT", "/Patient/p1", ("update", "Patient")),
        ("DELETE", "/Patient/p1", ("delete", "Patient")),
        ("GET", "/Patient/p1/$everything", ("operation", "Patient")),
        ("GET", "/metadata", ("capabilities", "none")),
        ("GET", "/_history", ("history-system", "none")),
        ("GET", "/NotAType/1", ("unknown", "none")),
        ("PATCH", "/metadata", ("unknown", "none")),
    ],
)
def test_labels(method: str, path: str, labels: tuple[str, str]) -> None:
    assert _route_labels(method, shape(path, TYPES), TYPES) == labels


def test_ids_and_operation_names_do_not_reach_the_shape() -> None:
    assert shape("/Patient/secret-id-1/$my-op-name", TYPES) == ("Patient", "*", "$op")
    assert shape("/SomeUnknownName/x", TYPES) == ("?", "*")
