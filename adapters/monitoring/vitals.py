"""The vital signs remote monitoring takes, and their shape on the way in.

https://hl7.org/fhir/R4/observation-vitalsigns.html -- "If a resource is a vital sign
observation it SHALL conform to this profile": category `vital-signs`, a `subject`
(Patient), `effective[x]`, and a value (or `dataAbsentReason`) as a Quantity whose system is
UCUM, in the profile's units; blood pressure as a panel (85354-9) with its systolic
(8480-6) and diastolic (8462-4) components.

A *reading* is an Observation of one of these codes that names the `device` it comes from
or claims a vital-signs profile in `meta.profile` (a patient app without a device does).
Other Observations of these codes (chart entries, lab feeds, HL7 v2 results) are stored as
they come. A reading is checked (`normalize`): a missing element or a unit that is not UCUM,
or that does not convert to the stored unit, is refused with a 422 naming the element; a
value in another UCUM unit (1 [lb_av], [degF], mmol/L of glucose) is converted to the
stored unit (kg, Cel, mg/dL) and a note records what was sent.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from adapters.monitoring.units import UnitError, convert
from fhir_server.errors import Issue, Unprocessable

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS = "vital-signs"
PROFILE_BASE = "http://hl7.org/fhir/StructureDefinition/"
VITAL_PROFILES = frozenset(
    PROFILE_BASE + name
    for name in ("vitalsigns", "heartrate", "oxygensat", "bp", "bodyweight", "bodytemp")
)
QUIET_STATUSES = frozenset({"cancelled", "entered-in-error"})  # no value needed, no alert


@dataclass(frozen=True, slots=True)
class Measure:
    """One quantity a reading carries, stored in `unit` (UCUM) rounded to `decimals`."""

    code: str  # LOINC
    name: str
    unit: str
    display: str  # Quantity.unit shown to people
    decimals: int
    molar_mass: float | None = None  # g/mol: converts substance to mass concentrations


@dataclass(frozen=True, slots=True)
class Vital:
    """A kind of reading: its LOINC code(s), its value or its components."""

    code: str  # the code alerts are keyed on
    name: str
    value: Measure | None = None
    components: tuple[Measure, ...] = ()
    vital_sign: bool = True  # in the vital-signs profile (glucose is not): category required
    codes: frozenset[str] = field(default_factory=frozenset)  # other codes meaning it


HEART_RATE = Measure("8867-4", "Heart rate", "/min", "beats/minute", 0)
SPO2 = Measure("59408-5", "Oxygen saturation", "%", "%", 1)
SYSTOLIC = Measure("8480-6", "Systolic blood pressure", "mm[Hg]", "mmHg", 0)
DIASTOLIC = Measure("8462-4", "Diastolic blood pressure", "mm[Hg]", "mmHg", 0)
WEIGHT = Measure("29463-7", "Body weight", "kg", "kg", 2)
GLUCOSE = Measure("2339-0", "Glucose", "mg/dL", "mg/dL", 0, molar_mass=180.156)
TEMPERATURE = Measure("8310-5", "Body temperature", "Cel", "Cel", 1)

VITALS = (
    Vital(HEART_RATE.code, HEART_RATE.name, HEART_RATE),
    Vital(SPO2.code, SPO2.name, SPO2, codes=frozenset({"2708-6"})),
    Vital("85354-9", "Blood pressure", components=(SYSTOLIC, DIASTOLIC)),
    Vital(WEIGHT.code, WEIGHT.name, WEIGHT),
    Vital(GLUCOSE.code, GLUCOSE.name, GLUCOSE, vital_sign=False),
    Vital(TEMPERATURE.code, TEMPERATURE.name, TEMPERATURE),
)
BY_CODE = {code: v for v in VITALS for code in (v.code, *v.codes)}
MEASURES = {
    **{m.code: m for v in VITALS for m in (*v.components, *([v.value] if v.value else []))},
    "2708-6": SPO2,  # a plan's Goal may name either oxygen saturation code
}


def loinc_codes(concept: Any) -> list[str]:
    """The LOINC codes of a CodeableConcept (none when it is not one)."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [
        c["code"]
        for c in codings or ()
        if isinstance(c, dict) and c.get("system") == LOINC and isinstance(c.get("code"), str)
    ]


def vital_of(observation: dict[str, Any]) -> Vital | None:
    """The vital sign an Observation's code names, if any."""
    return next((BY_CODE[c] for c in loinc_codes(observation.get("code")) if c in BY_CODE), None)


def is_reading(observation: dict[str, Any]) -> bool:
    """From a device, or claiming a vital-signs profile (see the module docstring)."""
    if observation.get("resourceType") != "Observation" or vital_of(observation) is None:
        return False
    profiles = (observation.get("meta") or {}).get("profile") or ()
    return bool(observation.get("device")) or any(p in VITAL_PROFILES for p in profiles)


def measurements(observation: dict[str, Any]) -> list[tuple[Measure, float]]:
    """The values a stored reading carries, each in its measure's unit."""
    vital = vital_of(observation)
    if vital is None:
        return []
    found: list[tuple[Measure, float]] = []
    if vital.value is not None:
        found.extend(_in_unit(vital.value, observation.get("valueQuantity")))
    for part in observation.get("component") or ():
        codes = loinc_codes(part.get("code"))
        for measure in vital.components:
            if measure.code in codes:
                found.extend(_in_unit(measure, part.get("valueQuantity")))
    return found


def _in_unit(measure: Measure, quantity: Any) -> list[tuple[Measure, float]]:
    if not isinstance(quantity, dict) or quantity.get("code") != measure.unit:
        return []
    value = quantity.get("value")
    return [(measure, float(value))] if isinstance(value, int | float) else []


def normalize(resource: dict[str, Any]) -> dict[str, Any]:
    """A reading in the profile's shape and stored units (see the module docstring); other
    resources unchanged. Raises Unprocessable (422) naming each element at fault."""
    if not is_reading(resource):
        return resource
    vital = vital_of(resource)
    assert vital is not None
    out = copy.deepcopy(resource)
    issues = _shape_issues(vital, out)
    notes: list[str] = []
    quiet = out.get("status") in QUIET_STATUSES
    if vital.value is not None:
        issues += _value(vital.value, out, "Observation", notes, required=not quiet)
    for measure in vital.components:
        issues += _component(measure, out, notes, required=not quiet)
    if issues:
        raise Unprocessable(issues[0].diagnostics, issues=issues)
    if notes:
        out["note"] = [*(out.get("note") or []), *({"text": text} for text in notes)]
    return out if notes else resource


def _issue(text: str, path: str) -> Issue:
    return Issue(text, code="processing", expression=(path,))


def _shape_issues(vital: Vital, obs: dict[str, Any]) -> list[Issue]:
    issues = []
    categories = [
        c.get("code")
        for concept in obs.get("category") or ()
        for c in concept.get("coding") or ()
        if isinstance(c, dict)
    ]
    if vital.vital_sign and VITAL_SIGNS not in categories:
        text = f"A {vital.name.lower()} reading needs category 'vital-signs'"
        issues.append(_issue(text, "Observation.category"))
    reference = (obs.get("subject") or {}).get("reference")
    if not isinstance(reference, str) or not reference.startswith("Patient/"):
        issues.append(_issue("A reading's subject must be a Patient", "Observation.subject"))
    if "effectiveDateTime" not in obs and "effectivePeriod" not in obs:
        text = "A reading needs the time it was taken (effectiveDateTime or effectivePeriod)"
        issues.append(_issue(text, "Observation.effective[x]"))
    return issues


def _component(
    measure: Measure, obs: dict[str, Any], notes: list[str], *, required: bool
) -> list[Issue]:
    parts = obs.get("component") or []
    for index, part in enumerate(parts):
        if measure.code in loinc_codes(part.get("code")):
            return _value(measure, part, f"Observation.component[{index}]", notes, required)
    if not required:
        return []
    text = f"A blood pressure reading needs a component coded {measure.code} ({measure.name})"
    return [_issue(text, "Observation.component")]


def _value(
    measure: Measure, holder: dict[str, Any], path: str, notes: list[str], required: bool
) -> list[Issue]:
    """Check the holder's valueQuantity (and convert it in place to the measure's unit)."""
    quantity = holder.get("valueQuantity")
    if quantity is None:
        other = [k for k in holder if k.startswith("value")]
        if other:
            text = f"{measure.name} must be a Quantity (valueQuantity), not {other[0]}"
            return [_issue(text, f"{path}.{other[0]}")]
        if required and "dataAbsentReason" not in holder:
            text = f"{measure.name} needs a valueQuantity or a dataAbsentReason"
            return [_issue(text, f"{path}.value[x]")]
        return []
    where = f"{path}.valueQuantity"
    value, system, unit = quantity.get("value"), quantity.get("system"), quantity.get("code")
    if not isinstance(value, int | float):
        return [_issue(f"{measure.name} needs a numeric value", f"{where}.value")]
    if system != UCUM or not isinstance(unit, str):
        text = f"{measure.name} must be in UCUM units (system {UCUM}, code {measure.unit})"
        return [_issue(text, f"{where}.system" if system != UCUM else f"{where}.code")]
    if unit == measure.unit:
        return []
    try:
        converted = convert(float(value), unit, measure.unit, measure.molar_mass)
    except UnitError as error:
        text = f"{measure.name} in '{unit}' is refused: {error}; send it in {measure.unit}"
        return [_issue(text, f"{where}.code")]
    rounded = round(converted, measure.decimals)
    stored = int(rounded) if measure.decimals == 0 and abs(rounded) < 2**53 else rounded
    holder["valueQuantity"] = {
        **quantity,
        "value": stored,
        "unit": measure.display,
        "system": UCUM,
        "code": measure.unit,
    }
    notes.append(f"{measure.name} converted from {value} {unit} to {stored} {measure.unit}")
    return []
