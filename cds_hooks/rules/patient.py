"""Age, sex and race from a Patient resource, as findings."""

from __future__ import annotations

from datetime import datetime

from cds_hooks.rules.fhirdata import JSON, age_in_years, listed, parse_date
from cds_hooks.rules.findings import Finding, missing

US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
OMB_WHITE = "2106-3"
OMB_BLACK = "2054-5"


def age(patient: JSON | None, now: datetime) -> Finding:
    born = parse_date(patient.get("birthDate")) if patient else None
    if born is None:
        return missing("Age", "no birth date on record")
    years = age_in_years(born.date(), now.date())
    return Finding("Age", years, f"{years} years")


def sex(patient: JSON | None) -> Finding:
    """`female` or `male` (Patient.gender); the equations and scores know no other value."""
    gender = patient.get("gender") if patient else None
    if gender in ("female", "male"):
        return Finding("Sex", gender, gender)
    shown = f"recorded as '{gender}'" if isinstance(gender, str) else "not recorded"
    return missing("Sex", f"{shown}; female or male is needed")


def omb_race_codes(patient: JSON | None) -> set[str]:
    """The OMB race categories of the US Core race extension (`ombCategory` codes)."""
    found: set[str] = set()
    for extension in listed((patient or {}).get("extension")):
        if not isinstance(extension, dict) or extension.get("url") != US_CORE_RACE:
            continue
        for part in listed(extension.get("extension")):
            if not isinstance(part, dict) or part.get("url") != "ombCategory":
                continue
            coding = part.get("valueCoding")
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                found.add(coding["code"])
    return found
