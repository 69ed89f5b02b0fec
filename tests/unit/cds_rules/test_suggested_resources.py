"""What the suggestions would create is valid FHIR R4: structure, and the codes of required
bindings (as the server checks a write)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cds_hooks.rules.foot_orthosis import MEASURE_ORDER, SCAN_ORDER, _service_request
from cds_hooks.rules.statin_order import draft_statin
from fhir_server.assembly import shipped_terminology
from fhir_server.model.validate import validate_resource
from terminology import Terminology
from terminology.bindings import check_bindings


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return shipped_terminology()


def assert_valid(resource: dict[str, Any], terminology: Terminology) -> None:
    validate_resource(copy.deepcopy(resource))
    assert check_bindings(resource, terminology.contains) == []


def test_the_draft_statin_order_is_a_valid_medication_request(terminology):
    order = draft_statin("p1")
    assert_valid(order, terminology)
    assert (order["status"], order["intent"]) == ("draft", "proposal")


def test_the_draft_service_requests_are_valid(terminology):
    orders = [{"resourceType": "DeviceRequest", "id": "dr1"}]
    for kind in (SCAN_ORDER, MEASURE_ORDER):
        request = _service_request(kind, "p1", orders)
        assert_valid(request, terminology)
        assert request["supportingInfo"] == [{"reference": "DeviceRequest/dr1"}]


def test_the_check_would_catch_a_wrong_code(terminology):
    order = draft_statin("p1") | {"intent": "maybe"}
    with pytest.raises(AssertionError):
        assert_valid(order, terminology)
