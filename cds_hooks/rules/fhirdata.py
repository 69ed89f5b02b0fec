"""Reading the FHIR data a rule service receives: bundle entries, codings, dates, quantities.

Every function here is pure and tolerant: a malformed element reads as "absent", never as an
exception, because prefetch data comes from the CDS client and the card must still say what
was missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

JSON = dict[str, Any]

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

# A Condition counts unless its status says it no longer applies
# (https://hl7.org/fhir/R4/condition.html#6.2.5 clinicalStatus, verificationStatus).
_INACTIVE_CLINICAL = frozenset({"inactive", "remission", "resolved"})
_REFUTED = frozenset({"refuted", "entered-in-error"})
# Observations that stand: https://hl7.org/fhir/R4/valueset-observation-status.html
_OBSERVATION_FINAL = frozenset({"final", "amended", "corrected"})


def listed(value: Any) -> list[Any]:
    """A JSON array as a list; anything else (a number, a string, an object) as empty."""
    return value if isinstance(value, list) else []


def entries(bundle: JSON | None, resource_type: str | None = None) -> list[JSON]:
    """The resources of a searchset Bundle (of one type when given); none for `None`."""
    if not isinstance(bundle, dict):
        return []
    found = []
    for entry in listed(bundle.get("entry")):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and (
            resource_type is None or resource.get("resourceType") == resource_type
        ):
            found.append(resource)
    return found


def codings(concept: Any) -> Iterator[tuple[str, str]]:
    """(system, code) of every coding of a CodeableConcept."""
    if not isinstance(concept, dict):
        return
    for coding in listed(concept.get("coding")):
        if isinstance(coding, dict):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str):
                yield system, code


def has_code(concept: Any, system: str, codes: Iterable[str]) -> bool:
    wanted = set(codes)
    return any(s == system and c in wanted for s, c in codings(concept))


def parse_date(value: Any) -> datetime | None:
    """A FHIR date or dateTime as an aware datetime (a partial date reads as its first day;
    a date without a zone as UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    try:
        if len(text) <= 10:
            parts = [int(p) for p in text.split("-")] + [1, 1]
            return datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age_in_years(birth: date, today: date) -> int:
    before_birthday = (today.month, today.day) < (birth.month, birth.day)
    return today.year - birth.year - int(before_birthday)


def observation_date(observation: JSON) -> datetime | None:
    """When an Observation applies: effective[x] (the start of a period), else issued."""
    period = observation.get("effectivePeriod")
    candidates = (
        observation.get("effectiveDateTime"),
        observation.get("effectiveInstant"),
        period.get("start") if isinstance(period, dict) else None,
        observation.get("issued"),
    )
    for candidate in candidates:
        moment = parse_date(candidate)
        if moment is not None:
            return moment
    return None


def observation_stands(observation: JSON) -> bool:
    """A result that counts: final, amended or corrected (a missing status counts too)."""
    status = observation.get("status")
    return status is None or (isinstance(status, str) and status in _OBSERVATION_FINAL)


def condition_recorded(condition: JSON) -> bool:
    """A Condition that happened: neither refuted nor an entry in error, whatever its clinical
    status (a past stroke or myocardial infarction counts as history once resolved)."""
    return not (_status_codes(condition.get("verificationStatus")) & _REFUTED)


def condition_applies(condition: JSON) -> bool:
    """A Condition that is active (or has no clinical status) and is neither refuted nor an
    entry in error."""
    clinical = _status_codes(condition.get("clinicalStatus"))
    verification = _status_codes(condition.get("verificationStatus"))
    return not (clinical & _INACTIVE_CLINICAL) and not (verification & _REFUTED)


def _status_codes(concept: Any) -> set[str]:
    """The codes of a status CodeableConcept, whatever their system (a status is read even
    when a sender left the system out)."""
    if not isinstance(concept, dict):
        return set()
    found = (c.get("code") for c in listed(concept.get("coding")) if isinstance(c, dict))
    return {code for code in found if isinstance(code, str)}


@dataclass(frozen=True, slots=True)
class Quantity:
    value: float
    unit: str  # the UCUM code when the quantity has one, else its human-readable unit

    def text(self) -> str:
        return f"{self.value:g} {self.unit}"


def quantity(element: Any) -> Quantity | None:
    """A Quantity (valueQuantity) with a numeric value, its UCUM code preferred."""
    if not isinstance(element, dict):
        return None
    value = element.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    code = element.get("code") if element.get("system") == UCUM else None
    unit = code or element.get("unit") or element.get("code")
    return Quantity(float(value), unit) if isinstance(unit, str) and unit else None


def coded_value(observation: JSON, system: str, code: str) -> Any:
    """The value[x] of an Observation coded `system|code`, or of such a component."""
    if has_code(observation.get("code"), system, (code,)):
        return observation.get("valueQuantity") or observation.get("valueCodeableConcept")
    for component in listed(observation.get("component")):
        if isinstance(component, dict) and has_code(component.get("code"), system, (code,)):
            return component.get("valueQuantity") or component.get("valueCodeableConcept")
    return None


def reference_to(resource: JSON) -> str | None:
    rid = resource.get("id")
    return f"{resource.get('resourceType')}/{rid}" if isinstance(rid, str) else None


def references(element: Any) -> set[str]:
    """Every `reference` string in a Reference or a list of them."""
    items = element if isinstance(element, list) else [element]
    return {
        i["reference"] for i in items if isinstance(i, dict) and isinstance(i.get("reference"), str)
    }


def concept_name(concept: Any) -> str:
    """How a CodeableConcept reads: its text, else a coding's display, else a code."""
    if not isinstance(concept, dict):
        return "coded entry"
    if isinstance(concept.get("text"), str) and concept["text"]:
        return str(concept["text"])
    found = [c for c in listed(concept.get("coding")) if isinstance(c, dict)]
    for key in ("display", "code"):
        for coding in found:
            if isinstance(coding.get(key), str) and coding[key]:
                return str(coding[key])
    return "coded entry"
