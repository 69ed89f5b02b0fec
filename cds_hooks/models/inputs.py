"""Reading a model's inputs from the resolved prefetch: one value per input, or why not.

- observation: of the Observations found (final, amended or corrected), the one with the
  latest date (`effective[x]`, else `issued`); its `valueQuantity` (or that of its component
  with the input's `component` code), converted to the manifest's UCUM unit. A latest value
  older than `max_age_days` is too old; an Observation without a date, value or unit that
  converts cannot be used.
- patient-age: completed years on the day of the call, from `Patient.birthDate` (a full date).
- patient-gender: `Patient.gender`, mapped by the manifest's `values`.
- condition: 1 when an active Condition carries one of the codes, else 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from cds_hooks.models.manifest import Input
from cds_hooks.models.units import UnitError, convert

JSON = dict[str, Any]
UCUM = "http://unitsofmeasure.org"
_USABLE_STATUS = frozenset({"final", "amended", "corrected"})
_ACTIVE = frozenset({"active", "recurrence", "relapse"})
PATIENT_KEY = "patient"
CONDITIONS_KEY = "conditions"
FLOAT32_MAX = 3.4e38  # the model takes float32


@dataclass(frozen=True, slots=True)
class Used:
    """An input's value as given to the model (`value`, in `unit`), and where it came from."""

    input: Input
    value: float
    unit: str | None = None
    date: str | None = None
    found: str | None = None  # the value as recorded, when it was converted

    def describe(self) -> str:
        text = f"{self.input.display}: {self.value:.4g}"
        text += f" {self.unit}" if self.unit and self.unit != "1" else ""
        text += f" (recorded {self.found})" if self.found else ""
        return text + (f", {self.date}" if self.date else "")


@dataclass(frozen=True, slots=True)
class Unusable:
    """An input the model cannot be given, and why (missing, too old, ...)."""

    input: Input
    reason: str

    def describe(self) -> str:
        return f"{self.input.display}: {self.reason}"


Reading = Used | Unusable


def observation_key(inputs: tuple[Input, ...], code: str) -> str:
    """The prefetch key of the search for `code`: the name of the first input reading it."""
    return next(i.name for i in inputs if i.source == "observation" and i.code == code)


def prefetch_templates(inputs: tuple[Input, ...]) -> dict[str, str]:
    """One template per Observation code, one for the Patient, one for all Conditions."""
    templates: dict[str, str] = {}
    if any(i.source.startswith("patient-") for i in inputs):
        templates[PATIENT_KEY] = "Patient/{{context.patientId}}"
    for item in inputs:
        if item.source == "observation" and item.code:
            key = observation_key(inputs, item.code)
            templates.setdefault(
                key,
                "Observation?patient={{context.patientId}}"
                f"&code={quote(item.code, safe=':/|')}&_sort=-date&_count=10",
            )
    codes = sorted({c for i in inputs if i.source == "condition" for c in i.codes})
    if codes:
        joined = ",".join(quote(c, safe=":/|") for c in codes)
        templates[CONDITIONS_KEY] = f"Condition?patient={{{{context.patientId}}}}&code={joined}"
    return templates


def read(
    inputs: tuple[Input, ...], prefetch: dict[str, JSON | None], now: datetime
) -> list[Reading]:
    """Every input's reading, in manifest order."""
    return [_read_one(item, inputs, prefetch, now) for item in inputs]


def _read_one(
    item: Input, inputs: tuple[Input, ...], prefetch: dict[str, JSON | None], now: datetime
) -> Reading:
    if item.source == "observation":
        assert item.code is not None
        return _observation(item, prefetch.get(observation_key(inputs, item.code)), now)
    if item.source == "condition":
        return _condition(item, prefetch.get(CONDITIONS_KEY))
    patient = prefetch.get(PATIENT_KEY)
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        return Unusable(item, "no Patient")
    if item.source == "patient-age":
        return _age(item, patient, now)
    return _gender(item, patient)


def _age(item: Input, patient: JSON, now: datetime) -> Reading:
    try:
        born = date.fromisoformat(str(patient.get("birthDate")))
    except ValueError:
        return Unusable(item, "the Patient has no full birth date")
    today = now.date()
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return Used(item, float(years), "a", born.isoformat())


def _gender(item: Input, patient: JSON) -> Reading:
    gender = patient.get("gender")
    values = item.values or {}
    if not isinstance(gender, str) or gender not in values:
        return Unusable(item, f"gender {gender or 'not recorded'!s} is not one the model knows")
    return Used(item, float(values[gender]), found=gender)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _codes(concept: Any) -> Iterator[str]:
    for coding in _list(_dict(concept).get("coding")):
        if isinstance(coding, dict):
            yield f"{coding.get('system')}|{coding.get('code')}"


def _entries(bundle: JSON | None, resource_type: str) -> Iterator[JSON]:
    for entry in _list(_dict(bundle).get("entry")):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
            yield resource


def _condition(item: Input, bundle: JSON | None) -> Reading:
    for condition in _entries(bundle, "Condition"):
        status = set(_codes(condition.get("clinicalStatus")))
        active = not status or any(s.rpartition("|")[2] in _ACTIVE for s in status)
        if active and set(_codes(condition.get("code"))) & set(item.codes):
            return Used(item, 1.0, found="present")
    return Used(item, 0.0, found="absent")


def _when(observation: JSON) -> datetime | None:
    period = _dict(observation.get("effectivePeriod"))
    for value in (
        observation.get("effectiveDateTime"),
        observation.get("effectiveInstant"),
        period.get("end"),
        period.get("start"),
        observation.get("issued"),
    ):
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value if len(value) > 7 else f"{value}-01")
            except ValueError:
                continue
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _quantity(item: Input, observation: JSON) -> JSON | None:
    if item.component is None:
        quantity = observation.get("valueQuantity")
    else:
        parts = (c for c in _list(observation.get("component")) if isinstance(c, dict))
        found = next((c for c in parts if item.component in _codes(c.get("code"))), None)
        quantity = (found or {}).get("valueQuantity")
    return quantity if isinstance(quantity, dict) else None


def _observation(item: Input, bundle: JSON | None, now: datetime) -> Reading:
    dated = [
        (when, obs)
        for obs in _entries(bundle, "Observation")
        if isinstance(obs.get("status"), str)
        and obs["status"] in _USABLE_STATUS
        and (item.code or "") in _codes(obs.get("code"))
        and _quantity(item, obs) is not None
        and (when := _when(obs)) is not None
    ]
    if not dated:
        return Unusable(item, "missing")
    when, latest = max(dated, key=lambda pair: pair[0])
    day = when.date().isoformat()
    if item.max_age_days and now - when > timedelta(days=item.max_age_days):
        return Unusable(item, f"too old ({day}; the limit is {item.max_age_days} days)")
    return _converted(item, _quantity(item, latest) or {}, day)


def _converted(item: Input, quantity: JSON, day: str) -> Reading:
    value = quantity.get("value")
    unit = quantity.get("code") if quantity.get("system") == UCUM else None
    unit = unit or quantity.get("unit") or ("1" if item.unit == "1" else None)
    if not isinstance(value, int | float) or isinstance(value, bool) or unit is None:
        return Unusable(item, f"the value of {day} has no number or no unit")
    assert item.unit is not None
    try:
        number = convert(float(value), str(unit), item.unit, item.molar_mass)
    except UnitError as error:
        return Unusable(item, f"the value of {day} cannot be used: {error}")
    if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        return Unusable(item, f"the value of {day} is out of range")
    found = None if unit == item.unit else f"{value} {unit}"
    if item.transform == "ln":
        if number <= 0:
            return Unusable(item, f"the value of {day} is not positive")
        return Used(item, math.log(number), f"ln({item.unit})", day, f"{number:.4g} {item.unit}")
    return Used(item, number, item.unit, day, found)
