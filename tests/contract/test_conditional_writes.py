"""Conditional writes refuse criteria that filter nothing, on every engine.

Criteria like `identifier=` (no value), `_count=1` (a result parameter) or `identifier=|`
select every resource of the type: on a type holding one resource, If-None-Exist returned
it, a conditional update overwrote it and a conditional delete deleted it. They are a 400
wherever criteria appear: headers, conditional URLs, transaction entries and conditional
references. Also: `POST Type?criteria` is no conditional create (400), and a conditional
patch without a match is a 404 (https://hl7.org/fhir/R4/http.html#patch).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from fhir_server.context import SYSTEM
from fhir_server.errors import FhirError
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage

NO_FILTER = [
    "identifier=",  # an empty value
    "identifier=,",  # only empty alternatives
    "identifier=|",  # no system and no code
    "_count=1",  # a result parameter
    "_sort=_id&_summary=true&_elements=gender&_include=Patient:organization",
    "name=%CC%81",  # a string that normalizes to nothing (a lone combining accent)
]


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
    **headers: str,
) -> tuple[int, dict[str, Any]]:
    """(status, body) of one interaction; a refused one gives its status and outcome."""
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    request = Request(method, path, query, headers=named, body=body, context=SYSTEM)
    try:
        response = await svc.handle(request)
    except FhirError as error:
        return error.status, error.outcome()
    data = response.body
    return response.status, orjson.loads(data) if isinstance(data, bytes) else (data or {})


def patient(mrn: str, **extra: object) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "gender": "female",
        "identifier": [{"system": "urn:mrn", "value": mrn}],
        **extra,
    }


def diagnostics(outcome: dict[str, Any]) -> str:
    return " ".join(issue.get("diagnostics", "") for issue in outcome["issue"])


async def only_patient(svc: FhirService) -> dict[str, Any]:
    status, made = await call(svc, "POST", "Patient", patient("only"))
    assert status == 201
    return made


async def assert_untouched(svc: FhirService, made: dict[str, Any]) -> None:
    status, now = await call(svc, "GET", f"Patient/{made['id']}")
    assert status == 200 and now["meta"]["versionId"] == made["meta"]["versionId"]
    _, found = await call(svc, "GET", "Patient")
    assert found["total"] == 1


@pytest.mark.parametrize("criteria", NO_FILTER)
async def test_if_none_exist_without_a_filter(service: FhirService, criteria: str) -> None:
    made = await only_patient(service)
    status, outcome = await call(
        service, "POST", "Patient", patient("other"), if_none_exist=criteria
    )
    assert status == 400
    assert "filter nothing" in diagnostics(outcome)
    await assert_untouched(service, made)


@pytest.mark.parametrize("criteria", NO_FILTER)
async def test_conditional_update_without_a_filter(service: FhirService, criteria: str) -> None:
    made = await only_patient(service)
    status, outcome = await call(
        service,
        "PUT",
        "Patient",
        patient("over", gender="male"),
        query=tuple(parse_qsl(criteria, keep_blank_values=True)),
    )
    assert status == 400 and "filter nothing" in diagnostics(outcome)
    await assert_untouched(service, made)


@pytest.mark.parametrize("criteria", NO_FILTER)
async def test_conditional_delete_without_a_filter(service: FhirService, criteria: str) -> None:
    made = await only_patient(service)
    status, outcome = await call(
        service, "DELETE", "Patient", query=tuple(parse_qsl(criteria, keep_blank_values=True))
    )
    assert status == 400 and "filter nothing" in diagnostics(outcome)
    await assert_untouched(service, made)


@pytest.mark.parametrize("criteria", NO_FILTER)
async def test_conditional_patch_without_a_filter(service: FhirService, criteria: str) -> None:
    made = await only_patient(service)
    status, outcome = await call(
        service,
        "PATCH",
        "Patient",
        [{"op": "replace", "path": "/gender", "value": "male"}],
        query=tuple(parse_qsl(criteria, keep_blank_values=True)),
    )
    assert status == 400 and "filter nothing" in diagnostics(outcome)
    await assert_untouched(service, made)


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


@pytest.mark.parametrize("criteria", NO_FILTER)
async def test_transaction_criteria_without_a_filter(service: FhirService, criteria: str) -> None:
    """ifNoneExist, a conditional PUT and DELETE URL, and a conditional reference."""
    made = await only_patient(service)
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": f"Patient?{criteria}"},
    }
    entries: list[dict[str, Any]] = [
        {
            "resource": patient("tx"),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": criteria},
        },
        {"resource": patient("tx"), "request": {"method": "PUT", "url": f"Patient?{criteria}"}},
        {"request": {"method": "DELETE", "url": f"Patient?{criteria}"}},
        {"resource": observation, "request": {"method": "POST", "url": "Observation"}},
    ]
    for index, one in enumerate(entries):
        status, outcome = await call(service, "POST", "", transaction(one))
        assert status == 400, one
        assert diagnostics(outcome).startswith("Bundle.entry[0]:"), index
        assert "filter nothing" in diagnostics(outcome)
    await assert_untouched(service, made)
    _, observations = await call(service, "GET", "Observation")
    assert observations["total"] == 0


async def test_batch_entry_without_a_filter_fails_alone(service: FhirService) -> None:
    made = await only_patient(service)
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": patient("b"),
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier="},
            },
            {
                "resource": patient("c"),
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": "identifier=urn:mrn|c",
                },
            },
        ],
    }
    status, result = await call(service, "POST", "", batch)
    assert status == 200
    assert [e["response"]["status"] for e in result["entry"]] == ["400 Bad Request", "201 Created"]
    _, found = await call(service, "GET", "Patient", query=(("identifier", "urn:mrn|"),))
    assert {p["resource"]["identifier"][0]["value"] for p in found["entry"]} == {"only", "c"}
    assert made["id"] in {p["resource"]["id"] for p in found["entry"]}


async def test_unknown_parameters_in_criteria_are_refused(service: FhirService) -> None:
    await only_patient(service)
    status, outcome = await call(
        service,
        "POST",
        "Patient",
        patient("u"),
        if_none_exist="colour=blue",
        prefer="handling=lenient",
    )
    assert status == 400 and "colour" in diagnostics(outcome)


async def test_a_real_filter_with_result_parameters_still_matches(service: FhirService) -> None:
    made = await only_patient(service)
    status, found = await call(
        service,
        "POST",
        "Patient",
        patient("again"),
        if_none_exist="identifier=urn:mrn|only&_count=1",
    )
    assert status == 200 and found["id"] == made["id"]
    status, updated = await call(
        service,
        "PUT",
        "Patient",
        patient("only", gender="male"),
        query=(("identifier", "urn:mrn|only"), ("_count", "1")),
    )
    assert status == 200 and updated["id"] == made["id"] and updated["gender"] == "male"


# -- POST Type?criteria ----------------------------------------------------------------------


@pytest.mark.parametrize("prefer", ["", "handling=lenient", "handling=strict"])
async def test_create_with_a_query_is_refused(service: FhirService, prefer: str) -> None:
    made = await only_patient(service)
    status, outcome = await call(
        service,
        "POST",
        "Patient",
        patient("only"),
        query=(("identifier", "urn:mrn|only"),),
        prefer=prefer,
    )
    assert status == 400
    assert "If-None-Exist" in diagnostics(outcome) and "identifier" in diagnostics(outcome)
    await assert_untouched(service, made)


async def test_create_with_only_format_parameters_is_a_create(service: FhirService) -> None:
    status, made = await call(
        service, "POST", "Patient", patient("f"), query=(("_format", "json"), ("_pretty", "true"))
    )
    assert status == 201 and made["identifier"][0]["value"] == "f"


async def test_create_entry_with_a_query_fails_its_transaction(service: FhirService) -> None:
    made = await only_patient(service)
    status, outcome = await call(
        service,
        "POST",
        "",
        transaction(
            {
                "resource": patient("only"),
                "request": {"method": "POST", "url": "Patient?identifier=urn:mrn|only"},
            }
        ),
    )
    assert status == 400 and "If-None-Exist" in diagnostics(outcome)
    await assert_untouched(service, made)


# -- conditional patch -------------------------------------------------------------------------


async def test_conditional_patch_outcomes(service: FhirService) -> None:
    made = await only_patient(service)
    await call(service, "POST", "Patient", patient("twin"))
    await call(service, "POST", "Patient", patient("twin"))
    patch = [{"op": "replace", "path": "/gender", "value": "male"}]

    status, outcome = await call(
        service, "PATCH", "Patient", patch, query=(("identifier", "urn:mrn|nobody"),)
    )
    assert status == 404 and outcome["issue"][0]["code"] == "not-found"
    status, _ = await call(
        service, "PATCH", "Patient", patch, query=(("identifier", "urn:mrn|twin"),)
    )
    assert status == 412
    status, patched = await call(
        service, "PATCH", "Patient", patch, query=(("identifier", "urn:mrn|only"),)
    )
    assert status == 200 and patched["id"] == made["id"] and patched["gender"] == "male"


async def test_conditional_patch_entry_without_a_match_is_404(service: FhirService) -> None:
    await only_patient(service)
    operation = {
        "name": "operation",
        "part": [
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.gender"},
            {"name": "value", "valueCode": "male"},
        ],
    }
    status, outcome = await call(
        service,
        "POST",
        "",
        transaction(
            {
                "resource": {"resourceType": "Parameters", "parameter": [operation]},
                "request": {"method": "PATCH", "url": "Patient?identifier=urn:mrn|nobody"},
            }
        ),
    )
    assert status == 404 and diagnostics(outcome).startswith("Bundle.entry[0]:")
