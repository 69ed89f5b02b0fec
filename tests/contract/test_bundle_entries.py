"""Malformed Bundle entries are a 400 for that entry, never a 500, on every engine.

In a batch the entry gets a 400 response and the other entries still happen; in a
transaction the whole transaction is a 400 whose diagnostics name the entry.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_server.context import SYSTEM
from fhir_server.errors import FhirError
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage


def basic(text: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Basic", "code": {"text": text}, **extra}


def nested_extension(depth: int) -> dict[str, Any]:
    extension: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "leaf"}
    for _ in range(depth):
        extension = {"url": "http://example.org/branch", "extension": [extension]}
    return extension


def good() -> dict[str, Any]:
    return {"resource": basic("good"), "request": {"method": "POST", "url": "Basic"}}


MALFORMED: dict[str, Any] = {
    "entry not an object": "Basic",
    "request not an object": {"resource": basic("x"), "request": "POST Basic"},
    "request missing": {"resource": basic("x")},
    "method not a string": {"resource": basic("x"), "request": {"method": 5, "url": "Basic"}},
    "method a list": {"resource": basic("x"), "request": {"method": ["POST"], "url": "Basic"}},
    "url missing": {"resource": basic("x"), "request": {"method": "POST"}},
    "url not a string": {"resource": basic("x"), "request": {"method": "POST", "url": 7}},
    "fullUrl not a string": {
        "fullUrl": ["urn:uuid:x"],
        "resource": basic("x"),
        "request": {"method": "POST", "url": "Basic"},
    },
    "resource not an object": {
        "resource": ["Basic"],
        "request": {"method": "POST", "url": "Basic"},
    },
    "ifNoneExist a number": {
        "resource": basic("x"),
        "request": {"method": "POST", "url": "Basic", "ifNoneExist": 5},
    },
    "ifNoneExist an object": {
        "resource": basic("x"),
        "request": {"method": "POST", "url": "Basic", "ifNoneExist": {"identifier": "x"}},
    },
    "ifMatch a list": {
        "resource": basic("x", id="b1"),
        "request": {"method": "PUT", "url": "Basic/b1", "ifMatch": ['W/"1"']},
    },
    "ifNoneMatch a number": {
        "resource": basic("x"),
        "request": {"method": "GET", "url": "Basic", "ifNoneMatch": 1},
    },
    "ifModifiedSince a bool": {
        "request": {"method": "GET", "url": "Basic", "ifModifiedSince": True}
    },
    "400-deep extensions": {
        "fullUrl": "urn:uuid:5e6f7081-92a3-4d4e-8f50-6b7c8d9e0f1a",
        "resource": basic("deep", extension=[nested_extension(400)]),
        "request": {"method": "POST", "url": "Basic"},
    },
}


@pytest.fixture
def service(storage: Storage) -> FhirService:
    return FhirService(storage, base_url="http://test/fhir")


async def post_bundle(svc: FhirService, bundle: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    try:
        response = await svc.handle(Request("POST", "", body=bundle, context=SYSTEM))
    except FhirError as error:
        return error.status, error.outcome()
    assert isinstance(response.body, bytes)
    return response.status, orjson.loads(response.body)


async def basics(svc: FhirService) -> list[str]:
    response = await svc.handle(Request("GET", "Basic", context=SYSTEM))
    assert isinstance(response.body, bytes)
    found = orjson.loads(response.body)
    return sorted(e["resource"]["code"]["text"] for e in found.get("entry", []))


@pytest.mark.parametrize("shape", list(MALFORMED))
async def test_batch_answers_the_malformed_entry_alone(service: FhirService, shape: str) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [good(), MALFORMED[shape], good()],
    }
    status, result = await post_bundle(service, bundle)
    assert status == 200
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created", "400 Bad Request", "201 Created"]
    assert result["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]
    assert await basics(service) == ["good", "good"]


@pytest.mark.parametrize("shape", list(MALFORMED))
async def test_transaction_fails_naming_the_entry(service: FhirService, shape: str) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [good(), MALFORMED[shape]]}
    status, outcome = await post_bundle(service, bundle)
    assert status == 400
    assert outcome["issue"][0]["diagnostics"].startswith("Bundle.entry[1]")
    assert await basics(service) == []
