"""The rule services over real HTTP: the sandbox-like client (ES384 JWT with jku, prefetch
resolved with POST [type]/_search, feedback) against a server offering the shipped services
and loaded with patients that have and lack each input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.cds_client import cds_cli

NOW = datetime.now(UTC)
LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
FEET = "urn:fhir-server:CodeSystem:foot-measurement"
RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"


def when(days: int) -> str:
    return (NOW - timedelta(days=days)).isoformat(timespec="seconds")


def person(pid: str, age: int, gender: str, race: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "gender": gender,
        "birthDate": f"{NOW.year - age}-01-01",  # the birthday has passed: `age` years old
    }
    if race:
        omb = {
            "url": "ombCategory",
            "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": race},
        }
        resource["extension"] = [
            {"url": RACE, "extension": [omb, {"url": "text", "valueString": race}]}
        ]
    return resource


def measured(
    oid: str, pid: str, system: str, code: str, value: float, unit: str, days: int = 20
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when(days),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def smoking(oid: str, pid: str, answer: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when(20),
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": answer}]},
    }


def lipids_and_pressure(
    pid: str, tc: float, hdl: float, unit: str = "mg/dL", with_hdl: bool = True
):
    found = [
        measured(f"{pid}-tc", pid, LOINC, "2093-3", tc, unit),
        measured(f"{pid}-sbp", pid, LOINC, "8480-6", 120, "mm[Hg]"),
    ]
    if with_hdl:
        found.append(measured(f"{pid}-hdl", pid, LOINC, "2085-9", hdl, unit))
    return found


def condition(cid: str, pid: str, code: str, display: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{pid}"},
    }


DATA = [
    # 55-year-old white male smoker, the Goff et al. profile: 10.0 %, intermediate.
    person("smoker", 55, "male", "2106-3"),
    *lipids_and_pressure("smoker", 213, 50),
    smoking("smoker-smk", "smoker", "449868002"),
    # African-American woman, lipids in mmol/L: 3.0 %, low.
    person("mmol", 55, "female", "2054-5"),
    *lipids_and_pressure("mmol", 213 / 38.67, 50 / 38.67, unit="mmol/L"),
    smoking("mmol-smk", "mmol", "8517006"),
    # No HDL on record: no risk, says what is missing.
    person("no-hdl", 60, "male"),
    *lipids_and_pressure("no-hdl", 213, 50, with_hdl=False),
    smoking("no-hdl-smk", "no-hdl", "266919005"),
    # Too young for the equations.
    person("young", 35, "female"),
    # Atrial fibrillation, 72-year-old woman with hypertension and diabetes: CHA2DS2-VASc 4.
    person("af", 72, "female"),
    condition("af-af", "af", "49436004", "Atrial fibrillation"),
    condition("af-htn", "af", "38341003", "Hypertensive disorder"),
    condition("af-dm", "af", "44054006", "Diabetes mellitus type 2"),
    # Foot orthosis: one patient with a recent scan and every measurement, one with nothing.
    person("feet-ok", 45, "female"),
    {
        "resourceType": "DocumentReference",
        "id": "feet-ok-scan",
        "status": "current",
        "subject": {"reference": "Patient/feet-ok"},
        "date": when(5),
        "content": [{"attachment": {"contentType": "model/stl", "url": "Binary/feet-ok-mesh"}}],
    },
    *(
        measured(f"feet-ok-{code}", "feet-ok", FEET, code, value, "mm", 5)
        for code, value in (
            ("foot-length", 262),
            ("ball-width", 98),
            ("heel-width", 64),
            ("arch-height", 17),
        )
    ),
    person("feet-none", 45, "male"),
]


def orthosis_order(pid: str) -> dict[str, Any]:
    request = {
        "resourceType": "DeviceRequest",
        "id": f"{pid}-order",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "codeCodeableConcept": {"coding": [{"system": HCPCS, "code": "L3030"}]},
    }
    return {
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": request}],
        }
    }


@pytest.fixture(scope="module")
def stack(cds_stack_factory):
    return cds_stack_factory(None, DATA)  # the shipped services


def cards(answer) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    return list(answer.json()["cards"])


def test_discovery_lists_the_rule_services(stack) -> None:
    services = {s["id"]: s for s in stack.client.discovery().json()["services"]}
    assert {
        "ascvd-10-year-risk",
        "cha2ds2-vasc",
        "foot-orthosis-order-select",
        "foot-orthosis-order-sign",
    } <= set(services)
    assert services["foot-orthosis-order-sign"]["hook"] == "order-sign"
    assert services["ascvd-10-year-risk"]["prefetch"]["patient"] == "Patient/{{context.patientId}}"


def test_ascvd_bands_for_patients_with_each_input(stack) -> None:
    (smoker,) = cards(stack.client.call_service("ascvd-10-year-risk", patient_id="smoker"))
    assert smoker["summary"] == "10-year ASCVD risk 10.0 % (intermediate)"
    assert smoker["indicator"] == "warning" and smoker["selectionBehavior"] == "at-most-one"
    order = smoker["suggestions"][0]["actions"][0]["resource"]
    assert order["resourceType"] == "MedicationRequest" and order["status"] == "draft"
    (mmol,) = cards(stack.client.call_service("ascvd-10-year-risk", patient_id="mmol"))
    assert mmol["summary"] == "10-year ASCVD risk 3.0 % (low)" and "suggestions" not in mmol


def test_ascvd_missing_input_and_age_refusal(stack) -> None:
    (lacks,) = cards(stack.client.call_service("ascvd-10-year-risk", patient_id="no-hdl"))
    assert (
        lacks["summary"] == "10-year ASCVD risk not estimated: missing or outdated HDL cholesterol"
    )
    (young,) = cards(stack.client.call_service("ascvd-10-year-risk", patient_id="young"))
    assert young["summary"].endswith("apply to ages 40-79")


def test_prefetch_fetched_from_this_server_gives_the_same_card(stack) -> None:
    answer = stack.client.call_service(
        "ascvd-10-year-risk", patient_id="smoker", prefetch=False, fhir_server=stack.server.base
    )
    assert cards(answer)[0]["summary"] == "10-year ASCVD risk 10.0 % (intermediate)"


def test_412_when_the_data_cannot_be_had(stack) -> None:
    answer = stack.client.call_service("cha2ds2-vasc", patient_id="af", prefetch=False)
    assert answer.status_code == 412


def test_cha2ds2_vasc(stack) -> None:
    (card,) = cards(stack.client.call_service("cha2ds2-vasc", patient_id="af"))
    assert card["summary"] == "CHA2DS2-VASc 4: high stroke risk (about 4.0 %/year)"
    assert card["source"]["label"] == "2019 AHA/ACC/HRS atrial fibrillation guideline"
    assert cards(stack.client.call_service("cha2ds2-vasc", patient_id="smoker")) == []


@pytest.mark.parametrize("service", ["foot-orthosis-order-select", "foot-orthosis-order-sign"])
def test_foot_orthosis_check(stack, service) -> None:
    def call(pid: str):
        context = orthosis_order(pid)
        if service.endswith("select"):
            context["selections"] = [f"DeviceRequest/{pid}-order"]
        return stack.client.call_service(service, patient_id=pid, context=context)

    (card,) = cards(call("feet-none"))
    assert card["indicator"] == "warning" and card["selectionBehavior"] == "any"
    created = [s["actions"][0]["resource"]["resourceType"] for s in card["suggestions"]]
    assert created == ["ServiceRequest", "ServiceRequest"]
    assert cards(call("feet-ok")) == []


def test_feedback_on_the_statin_suggestion_is_stored(stack) -> None:
    (card,) = cards(stack.client.call_service("ascvd-10-year-risk", patient_id="smoker"))
    reason = card["overrideReasons"][0]
    answer = stack.client.feedback(
        "ascvd-10-year-risk", card, "overridden", overrideReason={"reason": reason}
    )
    assert answer.status_code == 200, answer.text
    listed = cds_cli(
        stack.database,
        "feedback",
        "list",
        "--service",
        "ascvd-10-year-risk",
        "--outcome",
        "overridden",
    )
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert rows and rows[-1]["overrideReason"]["reason"]["code"] == reason["code"]


def test_the_shipped_value_sets_are_served_by_the_terminology_service(stack) -> None:
    base = stack.server.base
    diabetes = "http://fhir-server.local/ValueSet/cds-diabetes"
    expanded = httpx.get(f"{base}/ValueSet/$expand", params={"url": diabetes})
    assert expanded.status_code == 200, expanded.text
    codes = {c["code"] for c in expanded.json()["expansion"]["contains"]}
    assert {"44054006", "E11.9"} <= codes
    af = "http://fhir-server.local/ValueSet/cds-atrial-fibrillation"
    found = httpx.get(f"{base}/Condition", params={"code:in": af})
    assert found.status_code == 200, found.text
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == ["af-af"]


def test_a_stored_value_set_of_the_same_url_replaces_the_shipped_one(stack) -> None:
    base = stack.server.base
    url = "http://fhir-server.local/ValueSet/cds-hypertension"
    site = {
        "resourceType": "ValueSet",
        "id": "site-hypertension",
        "url": url,
        "status": "active",
        "compose": {"include": [{"system": SNOMED, "concept": [{"code": "59621000"}]}]},
    }
    stored = httpx.put(f"{base}/ValueSet/site-hypertension", json=site)
    assert stored.status_code in (200, 201), stored.text
    expanded = httpx.get(f"{base}/ValueSet/$expand", params={"url": url}).json()
    assert [c["code"] for c in expanded["expansion"]["contains"]] == ["59621000"]
