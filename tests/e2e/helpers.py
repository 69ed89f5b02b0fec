from __future__ import annotations

import uuid
from typing import Any

JSON = "application/fhir+json"


def unique() -> str:
    return uuid.uuid4().hex[:12]


def patient(identifier: str | None = None, family: str = "Doe", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Jane"]}],
        "gender": "female",
        "birthDate": "1980-04-12",
    }
    if identifier:
        body["identifier"] = [{"system": "http://hospital.example/mrn", "value": identifier}]
    body.update(extra)
    return body


def observation(subject: str, code: str = "8867-4", value: float = 72) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2024-05-01T10:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
