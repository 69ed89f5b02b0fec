"""Which requests `FastReads` answers itself: plain reads only."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

from fhir_server.api.app import FhirApp, create_app
from fhir_server.api.fast_path import FastReads, base_url
from fhir_server.api.request_metrics import RequestCounter
from fhir_server.settings import Settings


async def _never(*args: Any) -> Any:
    raise AssertionError("not called")


FAST = FastReads("/fhir", ["localhost:8080"], RequestCounter("/fhir"), _never)
READY = SimpleNamespace(service=object())


def _scope(method: str, path: str, query: bytes = b"", **headers: str) -> dict[str, Any]:
    raw = [(b"host", b"localhost:8080")] + [
        (k.lower().replace("_", "-").encode(), v.encode()) for k, v in headers.items()
    ]
    return {"type": "http", "method": method, "path": path, "query_string": query, "headers": raw}


@pytest.mark.parametrize(
    "scope",
    [
        _scope("GET", "/fhir/Patient/1"),
        _scope("HEAD", "/fhir/Patient/1"),
        _scope("GET", "/fhir/Patient", b"name=x&_count=5"),
        _scope("GET", "/fhir"),
        _scope("GET", "/fhir/metadata", authorization="Bearer x"),
    ],
)
def test_plain_reads_are_answered_directly(scope: dict[str, Any]) -> None:
    assert FAST.accepts(scope, READY)


@pytest.mark.parametrize(
    "scope",
    [
        _scope("POST", "/fhir/Patient"),
        _scope("DELETE", "/fhir/Patient/1"),
        _scope("OPTIONS", "/fhir/Patient"),
        _scope("GET", "/fhirx/Patient"),
        _scope("GET", "/health/ready"),
        _scope("GET", "/fhir/Patient/1", content_length="0"),
        _scope("GET", "/fhir/Patient/1", transfer_encoding="chunked"),
        _scope("GET", "/fhir/Patient/1", origin="https://app.example"),
        _scope("GET", "/fhir/Binary/1"),
        _scope("GET", "/fhir/Patient", b"name=%ff\xff"),
        _scope("GET", "/fhir/Patient", b"name=a#b"),
        {**_scope("GET", "/fhir/Patient/1"), "headers": [(b"host", b"evil.example")]},
        {**_scope("GET", "/fhir/Patient/1"), "root_path": "/api"},
    ],
)
def test_everything_else_takes_the_general_stack(scope: dict[str, Any]) -> None:
    assert not FAST.accepts(scope, READY)


def test_paths_other_routes_serve_take_the_general_stack() -> None:
    known = re.compile("^/fhir/.well-known/smart-configuration$")
    fast = FastReads("/fhir", ["localhost:8080"], RequestCounter("/fhir"), _never, [known])
    assert not fast.accepts(_scope("GET", "/fhir/.well-known/smart-configuration"), READY)
    assert fast.accepts(_scope("GET", "/fhir/Patient/1"), READY)


def test_the_app_leaves_smart_discovery_to_its_route() -> None:
    app = create_app(Settings(auth="off"))
    assert isinstance(app, FhirApp) and app.fast_reads is not None
    assert not app.fast_reads.accepts(_scope("GET", "/fhir/.well-known/smart-configuration"), READY)


def test_nothing_is_answered_directly_before_start_up() -> None:
    assert not FAST.accepts(_scope("GET", "/fhir/Patient/1"), SimpleNamespace())


def test_the_base_follows_host_or_the_bound_address() -> None:
    assert base_url(_scope("GET", "/fhir/x"), "/fhir") == "http://localhost:8080/fhir"
    bound = {"headers": [], "server": ("10.0.0.1", 80), "scheme": "http"}
    assert base_url(bound, "/fhir") == "http://10.0.0.1/fhir"
    assert base_url({**bound, "server": ("10.0.0.1", 8443)}, "/fhir") == "http://10.0.0.1:8443/fhir"
