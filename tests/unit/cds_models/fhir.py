"""FHIR resources and hook calls for the model service tests."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cds_hooks.models.inputs import UCUM
from cds_hooks.service import HookCall

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RECENT = "2026-05-20T09:00:00Z"
OLD = "2024-01-10T09:00:00Z"

JSON = dict[str, Any]


def patient(birth: str = "1970-03-15", gender: str = "female") -> JSON:
    return {"resourceType": "Patient", "id": "p1", "birthDate": birth, "gender": gender}


def quantity(value: float, unit: str) -> JSON:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def observation(code: str, value: float, unit: str, when: str = RECENT) -> JSON:
    system, _, code = code.partition("|")
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
        "valueQuantity": quantity(value, unit),
    }


def panel(code: str, components: dict[str, float], when: str = RECENT) -> JSON:
    system, _, panel_code = code.partition("|")
    parts = []
    for component, value in components.items():
        c_system, _, c_code = component.partition("|")
        parts.append(
            {
                "code": {"coding": [{"system": c_system, "code": c_code}]},
                "valueQuantity": quantity(value, "1"),
            }
        )
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": panel_code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
        "component": parts,
    }


def bundle(*resources: JSON) -> JSON:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r} for r in resources],
    }


def call(prefetch: Mapping[str, JSON | None]) -> HookCall:
    return HookCall(
        hook="patient-view",
        hook_instance="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        context={"patientId": "p1", "userId": "Practitioner/1"},
        prefetch=dict(prefetch),
    )
