"""The FHIR service's interactions behave the same on every storage engine.

The storage contract checks the port; this checks what a client sees through the
interaction layer (no HTTP): versioning, conditional writes under concurrency,
transaction atomicity, history and search.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from fhir_server.context import SYSTEM
from fhir_server.errors import FhirError, Gone, PreconditionFailed
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage
from terminology.service import install


def patient(mrn: str, **extra: object) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "gender": "female",
        "identifier": [{"system": "urn:mrn", "value": mrn}],
        **extra,
    }


@pytest.fixture
def service(storage: Storage) -> FhirService:
    return FhirService(storage, base_url="http://test/fhir")


async def call(
    svc: FhirService,
    method: str,
    path: str,
    body: object = None,
    *,
    query: tuple[tuple[str, str], ...] = (),
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    response = await svc.handle(
        Request(method, path, query, headers=headers or {}, body=body, context=SYSTEM)
    )
    data = response.body
    if isinstance(data, bytes):
        data = orjson.loads(data)
    return response.status, data


async def test_versions_and_tombstones(service: FhirService) -> None:
    status, made = await call(service, "POST", "Patient", patient("a"))
    assert status == 201 and made["meta"]["versionId"] == "1"
    pid = made["id"]
    status, updated = await call(service, "PUT", f"Patient/{pid}", made | {"gender": "male"})
    assert status == 200 and updated["meta"]["versionId"] == "2"
    assert (await call(service, "DELETE", f"Patient/{pid}"))[0] == 204
    with pytest.raises(Gone):
        await call(service, "GET", f"Patient/{pid}")
    status, history = await call(service, "GET", f"Patient/{pid}/_history")
    assert history["total"] == 3
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "POST"]


async def test_conditional_create_race(service: FhirService) -> None:
    async def attempt() -> int:
        status, _ = await call(
            service,
            "POST",
            "Patient",
            patient("race"),
            headers={"if-none-exist": "identifier=urn:mrn|race"},
        )
        return status

    statuses = await asyncio.gather(*(attempt() for _ in range(8)))
    assert sorted(statuses) == [200] * 7 + [201]
    _, found = await call(service, "GET", "Patient", query=(("identifier", "urn:mrn|race"),))
    assert found["total"] == 1


async def test_if_match_race(service: FhirService) -> None:
    _, made = await call(service, "POST", "Patient", patient("m"))

    async def attempt(n: int) -> int:
        try:
            status, _ = await call(
                service,
                "PUT",
                f"Patient/{made['id']}",
                made | {"birthDate": f"19{n:02d}"},
                headers={"if-match": 'W/"1"'},
            )
        except PreconditionFailed:
            return 412
        return status

    statuses = await asyncio.gather(*(attempt(n) for n in range(6)))
    assert sorted(statuses) == [200] + [412] * 5


async def test_transaction_rolls_back_entirely(service: FhirService) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient("tx"), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {"resourceType": "Patient", "gender": 5},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    with pytest.raises(FhirError):
        await call(service, "POST", "", bundle)
    _, found = await call(service, "GET", "Patient", query=(("identifier", "urn:mrn|tx"),))
    assert found["total"] == 0


async def test_transaction_references_and_search(service: FhirService) -> None:
    urn = "urn:uuid:0b1c1f5e-8a7c-4f57-9d3e-2b7f8c9d0e1f"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": urn,
                "resource": patient("ref"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]},
                    "subject": {"reference": urn},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    status, result = await call(service, "POST", "", bundle)
    assert status == 200
    pid = result["entry"][0]["response"]["location"].split("/")[-3]
    _, found = await call(
        service,
        "GET",
        "Observation",
        query=(("subject", f"Patient/{pid}"), ("code", "http://loinc.org|1-8")),
    )
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{pid}"


async def test_terminology_modifiers_on_every_engine(service: FhirService) -> None:
    """token :in, :not-in, :below, :above through the terminology service; a stored
    CodeSystem and ValueSet take effect when their transaction commits."""
    await install(service)
    system = "http://example.org/cs/labs"
    cs = {
        "resourceType": "CodeSystem",
        "url": system,
        "status": "active",
        "content": "complete",
        "hierarchyMeaning": "is-a",
        "concept": [
            {
                "code": "panel",
                "concept": [{"code": "a", "concept": [{"code": "a1"}]}, {"code": "b"}],
            },
            {"code": "c"},
        ],
    }
    vs = {
        "resourceType": "ValueSet",
        "url": f"{system}/vs",
        "status": "active",
        "compose": {"include": [{"system": system, "concept": [{"code": "a"}, {"code": "c"}]}]},
    }
    assert (await call(service, "POST", "CodeSystem", cs))[0] == 201
    assert (await call(service, "POST", "ValueSet", vs))[0] == 201
    ids = {}
    for code in ("a", "a1", "b", "c"):
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": system, "code": code}]},
        }
        ids[(await call(service, "POST", "Observation", obs))[1]["id"]] = code

    async def found(name: str, value: str) -> set[str]:
        status, bundle = await call(service, "GET", "Observation", query=((name, value),))
        assert status == 200
        return {
            ids[e["resource"]["id"]]
            for e in bundle.get("entry", [])
            if e["resource"]["resourceType"] == "Observation"
        }

    assert await found("code:below", f"{system}|a") == {"a", "a1"}
    assert await found("code:below", f"{system}|panel") == {"a", "a1", "b"}
    assert await found("code:above", f"{system}|a1") == {"a", "a1"}
    assert await found("code:in", f"{system}/vs") == {"a", "c"}
    assert await found("code:not-in", f"{system}/vs") == {"a1", "b"}
