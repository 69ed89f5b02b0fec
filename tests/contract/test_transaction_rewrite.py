"""A transaction rewrites its fullUrls where R4 puts links, and nowhere else, on every engine.

https://hl7.org/fhir/R4/http.html#trules -- references, elements of type uri, url, oid and
uuid, and href/src in the narrative are rewritten; canonical elements are not, and plain
strings (Identifier.value, valueString, CodeableConcept.text, narrative text) are data.
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

PATIENT_URN = "urn:uuid:6f0a3b1e-2f0c-4c8e-9a55-0d6a1c2b3e4f"
REPORT_URN = "urn:uuid:0c4d2e9a-7b1f-4e3a-8c6d-5f2a9b8e7d10"


@pytest.fixture
def service(storage: Storage) -> FhirService:
    return FhirService(storage, base_url="http://test/fhir")


async def call(
    svc: FhirService,
    method: str,
    path: str,
    body: object = None,
    query: tuple[tuple[str, str], ...] = (),
) -> tuple[int, dict[str, Any]]:
    response = await svc.handle(Request(method, path, query, body=body, context=SYSTEM))
    data = response.body
    return response.status, orjson.loads(data) if isinstance(data, bytes) else (data or {})


def post(full_url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def created(result: dict[str, Any], index: int) -> str:
    """Type/id of the resource entry `index` created."""
    location = result["entry"][index]["response"]["location"]
    return "/".join(location.split("/")[-4:-2])


def document_reference() -> dict[str, Any]:
    """Every kind of element that may hold the Patient's fullUrl, links and data alike."""
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{PATIENT_URN}">'
            f'{PATIENT_URN}</a><img src="{PATIENT_URN}" alt="scan"/></div>',
        },
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": PATIENT_URN}],
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": REPORT_URN},
        "type": {"text": PATIENT_URN},
        "description": PATIENT_URN,
        "subject": {"reference": PATIENT_URN},
        "context": {"related": [{"reference": REPORT_URN}]},
        "extension": [
            {"url": "http://example.org/note", "valueString": PATIENT_URN},
            {"url": "http://example.org/source", "valueUri": PATIENT_URN},
            {"url": "http://example.org/profile", "valueCanonical": PATIENT_URN},
            {"url": "http://example.org/about", "valueReference": {"reference": PATIENT_URN}},
        ],
        "content": [
            {"attachment": {"contentType": "text/plain", "url": PATIENT_URN, "title": PATIENT_URN}}
        ],
    }


async def test_links_are_rewritten_and_data_is_kept(service: FhirService) -> None:
    patient = {"resourceType": "Patient", "gender": "female"}
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"text": "scan"},
        "subject": {"reference": PATIENT_URN},
    }
    status, result = await call(
        service,
        "POST",
        "",
        transaction(
            post(PATIENT_URN, patient),
            post(REPORT_URN, report),
            post("urn:uuid:9d1c6b2a-3e4f-4a5b-8c7d-6e5f4a3b2c1d", document_reference()),
        ),
    )
    assert status == 200
    pid, rid, did = created(result, 0), created(result, 1), created(result, 2)
    _, doc = await call(service, "GET", did)

    # links: references, uri and url elements, narrative href and src
    assert doc["subject"]["reference"] == pid
    assert doc["context"]["related"][0]["reference"] == rid
    assert doc["extension"][3]["valueReference"]["reference"] == pid
    assert doc["extension"][1]["valueUri"] == pid
    assert doc["content"][0]["attachment"]["url"] == pid
    assert f'href="{pid}"' in doc["text"]["div"] and f'src="{pid}"' in doc["text"]["div"]
    # data: strings, canonicals, narrative text
    assert doc["identifier"][0]["value"] == PATIENT_URN
    assert doc["masterIdentifier"]["value"] == REPORT_URN
    assert doc["type"]["text"] == PATIENT_URN
    assert doc["description"] == PATIENT_URN
    assert doc["extension"][0]["valueString"] == PATIENT_URN
    assert doc["extension"][2]["valueCanonical"] == PATIENT_URN
    assert doc["content"][0]["attachment"]["title"] == PATIENT_URN
    assert f">{PATIENT_URN}</a>" in doc["text"]["div"]


async def test_identifier_values_survive_a_population(service: FhirService) -> None:
    """Each DocumentReference names its report's fullUrl as an identifier and references
    the report: the references change, the identifiers do not."""
    entries, urns = [], []
    for n in range(5):
        urn = f"urn:uuid:00000000-0000-4000-8000-{n:012d}"
        urns.append(urn)
        entries.append(
            post(
                urn,
                {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "panel"}},
            )
        )
        entries.append(
            post(
                f"urn:uuid:10000000-0000-4000-8000-{n:012d}",
                {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "identifier": [{"system": "urn:ietf:rfc:3986", "value": urn}],
                    "context": {"related": [{"reference": urn}]},
                    "content": [{"attachment": {"contentType": "text/plain"}}],
                },
            )
        )
    status, result = await call(service, "POST", "", transaction(*entries))
    assert status == 200
    for n, urn in enumerate(urns):
        _, doc = await call(service, "GET", created(result, 2 * n + 1))
        assert doc["identifier"][0]["value"] == urn
        assert doc["context"]["related"][0]["reference"] == created(result, 2 * n)


async def test_contained_and_nested_resources_are_walked(service: FhirService) -> None:
    """Links inside contained resources are found by the contained resource's own type."""
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "contained": [
            {
                "resourceType": "Provenance",
                "id": "p",
                "recorded": "2024-01-01T00:00:00Z",
                "target": [{"reference": PATIENT_URN}],
                "agent": [{"who": {"reference": PATIENT_URN}}],
                "reason": [{"text": PATIENT_URN}],
            }
        ],
        "subject": {"reference": PATIENT_URN},
    }
    status, result = await call(
        service,
        "POST",
        "",
        transaction(
            post(PATIENT_URN, {"resourceType": "Patient"}),
            post("urn:uuid:2b3c4d5e-6f70-4a1b-9c2d-3e4f5a6b7c8d", observation),
        ),
    )
    assert status == 200
    pid = created(result, 0)
    _, obs = await call(service, "GET", created(result, 1))
    provenance = obs["contained"][0]
    assert provenance["target"][0]["reference"] == pid
    assert provenance["agent"][0]["who"]["reference"] == pid
    assert provenance["reason"][0]["text"] == PATIENT_URN


async def test_conditional_references_still_resolve(service: FhirService) -> None:
    _, made = await call(
        service,
        "POST",
        "Patient",
        {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "c1"}]},
    )
    note = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient?identifier=urn:mrn|c1"},
        "valueString": "Patient?identifier=urn:mrn|c1",
    }
    status, result = await call(
        service,
        "POST",
        "",
        transaction(post("urn:uuid:3c4d5e6f-7081-4b2c-9d3e-4f5a6b7c8d9e", note)),
    )
    assert status == 200
    _, obs = await call(service, "GET", created(result, 0))
    assert obs["subject"]["reference"] == f"Patient/{made['id']}"
    assert obs["valueString"] == "Patient?identifier=urn:mrn|c1"


async def test_a_failing_conditional_reference_names_its_entry(service: FhirService) -> None:
    note = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient?identifier=urn:mrn|nobody"},
    }
    with pytest.raises(FhirError) as caught:
        await call(
            service,
            "POST",
            "",
            transaction(
                post(PATIENT_URN, {"resourceType": "Patient"}),
                post("urn:uuid:4d5e6f70-8192-4c3d-8e4f-5a6b7c8d9e0f", note),
            ),
        )
    assert caught.value.status == 412
    assert caught.value.diagnostics.startswith("Bundle.entry[1]")
    _, found = await call(service, "GET", "Patient")
    assert found["total"] == 0
