"""Small FHIR record builders for the rule services' tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cds_hooks.service import Hook, HookCall

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"

JSON = dict[str, Any]


def clock() -> datetime:
    return NOW


def days_ago(days: int) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def born(age: int) -> str:
    """A birth date that makes the patient `age` years old at NOW."""
    return f"{NOW.year - age}-01-10"


def patient(age: int | None = 55, gender: str | None = "male", race: str | None = None) -> JSON:
    resource: JSON = {"resourceType": "Patient", "id": "p1"}
    if age is not None:
        resource["birthDate"] = born(age)
    if gender is not None:
        resource["gender"] = gender
    if race is not None:
        resource["extension"] = [
            {
                "url": RACE,
                "extension": [
                    {
                        "url": "ombCategory",
                        "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": race},
                    },
                    {"url": "text", "valueString": race},
                ],
            }
        ]
    return resource


def quantity_obs(
    code: str, value: float, unit: str, age_days: int = 30, system: str = LOINC
) -> JSON:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "effectiveDateTime": days_ago(age_days),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def bp_panel(systolic: float, age_days: int = 30) -> JSON:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "effectiveDateTime": days_ago(age_days),
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {
                    "value": systolic,
                    "unit": "mm[Hg]",
                    "system": UCUM,
                    "code": "mm[Hg]",
                },
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": 80, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
            },
        ],
    }


def smoking(snomed: str, age_days: int = 30) -> JSON:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
        "effectiveDateTime": days_ago(age_days),
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": snomed}]},
    }


def condition(system: str, code: str, display: str, status: str | None = "active") -> JSON:
    resource: JSON = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
    }
    if status:
        resource["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": status,
                }
            ]
        }
    return resource


def medication(code: str, display: str, status: str = "active") -> JSON:
    return {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": display}]
        },
    }


def bundle(*resources: JSON) -> JSON:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def call(
    hook: Hook = "patient-view", context: JSON | None = None, **prefetch: JSON | None
) -> HookCall:
    return HookCall(
        hook=hook,
        hook_instance="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        context=context
        if context is not None
        else {"userId": "Practitioner/u1", "patientId": "p1"},
        prefetch=dict(prefetch),
    )
