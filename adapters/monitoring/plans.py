"""Monitoring plans: a patient's thresholds per measure, and who is told.

A plan is an active `CarePlan` whose `subject` is the patient. Its Goals (`CarePlan.goal`,
or `CarePlan.activity.detail.goal`) set the bands: each `Goal.target` with a LOINC
`measure` this server monitors and a `detailRange` (low and/or high, UCUM Quantities)
is that measure's band for the patient; a bound left out is no limit. The care team told
of an alert are the plan's `careTeam` and `author`. Measures no plan sets keep the default
band (`DEFAULT_BANDS`, overridden by settings); with no plan, the default recipients are
told. Goals are checked when written (`check_goal`): a band in a unit that does not convert
to the measure's is refused with a 422, so a plan never silently fails to alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.monitoring.units import UnitError, convert
from adapters.monitoring.vitals import MEASURES, UCUM, Measure, loinc_codes
from fhir_server.context import SYSTEM
from fhir_server.errors import Issue, Unprocessable
from fhir_server.model import fhirjson

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx

Bounds = tuple[float | None, float | None]
DEFAULT_BANDS: Mapping[str, Bounds] = {
    "8867-4": (40.0, 130.0),  # heart rate, /min
    "8480-6": (90.0, 180.0),  # systolic, mm[Hg]
    "8462-4": (50.0, 110.0),  # diastolic, mm[Hg]
    "59408-5": (90.0, None),  # SpO2, %
    "2339-0": (70.0, 250.0),  # glucose, mg/dL
    "8310-5": (35.0, 38.0),  # body temperature, Cel
    # body weight (29463-7): no default; what matters is each patient's own band
}
ACTIVE_GOALS = frozenset({"active", "accepted"})
MAX_PLANS = 10  # active CarePlans of one patient read per reading


@dataclass(frozen=True, slots=True)
class Band:
    """A measure's normal range in its unit, and where it comes from."""

    low: float | None
    high: float | None
    source: str  # "Goal/x" or "default"

    def breach(self, value: float) -> str | None:
        """'below' or 'above' when `value` is outside the band, else None."""
        if self.low is not None and value < self.low:
            return "below"
        if self.high is not None and value > self.high:
            return "above"
        return None


@dataclass(slots=True)
class Plan:
    """The bands that apply to one patient's readings and whom an alert goes to."""

    bands: dict[str, Band] = field(default_factory=dict)
    recipients: list[str] = field(default_factory=list)  # references
    care_plans: list[str] = field(default_factory=list)  # "CarePlan/x"

    def band(self, measure: Measure) -> Band | None:
        return self.bands.get(measure.code)


async def load(
    svc: FhirService,
    tx: StorageTx,
    patient: str,
    defaults: Mapping[str, Bounds],
    recipients: list[str],
) -> Plan:
    """The plan of Patient/`patient` as `tx` sees it (defaults where it sets nothing)."""
    criteria = [("subject", f"Patient/{patient}"), ("status", "active")]
    found = await svc.find(tx, SYSTEM, "CarePlan", criteria, limit=MAX_PLANS)
    plan = Plan()
    for rec in sorted(found, key=lambda r: r.id):
        care_plan = fhirjson.loads(rec.data)
        plan.care_plans.append(f"CarePlan/{rec.id}")
        _add_recipients(plan, care_plan)
        for goal_id in _goal_ids(care_plan):
            goal = await tx.read("Goal", goal_id)
            if goal is not None and not goal.deleted:
                _add_bands(plan, goal_id, fhirjson.loads(goal.data), patient)
    for code, (low, high) in defaults.items():
        if code not in plan.bands and (low is not None or high is not None):
            plan.bands[code] = Band(low, high, "default")
    if not plan.care_plans:
        plan.recipients = list(recipients)
    return plan


def _add_recipients(plan: Plan, care_plan: dict[str, Any]) -> None:
    for ref in [*(care_plan.get("careTeam") or ()), care_plan.get("author")]:
        reference = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(reference, str) and reference not in plan.recipients:
            plan.recipients.append(reference)


def _goal_ids(care_plan: dict[str, Any]) -> list[str]:
    refs = list(care_plan.get("goal") or ())
    for activity in care_plan.get("activity") or ():
        refs.extend((activity.get("detail") or {}).get("goal") or ())
    ids = [
        ref["reference"].removeprefix("Goal/")
        for ref in refs
        if isinstance(ref.get("reference"), str) and ref["reference"].startswith("Goal/")
    ]
    return list(dict.fromkeys(ids))


def _add_bands(plan: Plan, goal_id: str, goal: dict[str, Any], patient: str) -> None:
    if goal.get("lifecycleStatus") not in ACTIVE_GOALS:
        return
    if (goal.get("subject") or {}).get("reference") != f"Patient/{patient}":
        return  # another patient's Goal named by mistake sets nothing here
    for target in goal.get("target") or ():
        measure = _measure(target)
        window = target.get("detailRange")
        if measure is None or measure.code in plan.bands or not isinstance(window, dict):
            continue
        try:
            low, high = (_bound(measure, window.get(end)) for end in ("low", "high"))
        except UnitError:
            continue  # refused on write; a Goal stored before this server checked them
        plan.bands[measure.code] = Band(low, high, f"Goal/{goal_id}")


def _measure(target: dict[str, Any]) -> Measure | None:
    return next((MEASURES[c] for c in loinc_codes(target.get("measure")) if c in MEASURES), None)


def _bound(measure: Measure, quantity: Any) -> float | None:
    if not isinstance(quantity, dict) or quantity.get("value") is None:
        return None
    value, unit = quantity.get("value"), quantity.get("code")
    if quantity.get("system") != UCUM or not isinstance(unit, str):
        raise UnitError(f"the bound is not in UCUM units (system {UCUM})")
    if not isinstance(value, int | float):
        raise UnitError("the bound has no numeric value")
    return convert(float(value), unit, measure.unit, measure.molar_mass)


def check_goal(resource: dict[str, Any]) -> dict[str, Any]:
    """Refuse (422) a Goal whose band for a monitored measure cannot be used."""
    issues: list[Issue] = []
    for index, target in enumerate(resource.get("target") or ()):
        measure = _measure(target)
        window = target.get("detailRange")
        if measure is None or not isinstance(window, dict):
            continue
        bounds: list[float | None] = []
        for end in ("low", "high"):
            path = f"Goal.target[{index}].detailRange.{end}"
            try:
                bounds.append(_bound(measure, window.get(end)))
            except UnitError as error:
                text = f"{measure.name} band {end}: {error}; give it in {measure.unit}"
                issues.append(Issue(text, code="processing", expression=(f"{path}.code",)))
                bounds.append(None)
        low, high = bounds
        if low is not None and high is not None and low > high:
            path = f"Goal.target[{index}].detailRange"
            text = f"{measure.name} band: low {low} is above high {high}"
            issues.append(Issue(text, code="processing", expression=(path,)))
    if issues:
        raise Unprocessable(issues[0].diagnostics, issues=issues)
    return resource
