"""Plugging remote monitoring into the FHIR service.

- Transforms: readings are checked and converted to their stored units
  (`vitals.normalize`); Goals with a band for a monitored measure are checked
  (`plans.check_goal`).
- Trigger: `alerts.Alerts` on Observations, inside the writing transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters.monitoring import units
from adapters.monitoring.alerts import Alerts
from adapters.monitoring.plans import DEFAULT_BANDS, Bounds, check_goal
from adapters.monitoring.vitals import MEASURES, normalize
from fhir_server.interactions.service import FhirService

__all__ = ["Options", "install", "problem", "warm_units"]


@dataclass(frozen=True, slots=True)
class Options:
    """Default bands (LOINC code -> low, high in the measure's unit; shipped ones unless
    overridden) and who is told when a patient has no plan (references)."""

    bands: Mapping[str, Bounds] = field(default_factory=dict)
    recipients: tuple[str, ...] = ()


def install(svc: FhirService, options: Options) -> Alerts:
    """Attach remote monitoring to `svc`; ValueError when `problem(options)` names one."""
    why = problem(options)
    if why:
        raise ValueError(why)
    svc.add_transform(("Observation",), normalize)
    svc.add_transform(("Goal",), check_goal)
    alerts = Alerts({**DEFAULT_BANDS, **options.bands}, list(options.recipients))
    svc.add_trigger(("Observation",), alerts)
    return alerts


def problem(options: Options) -> str | None:
    """Why the server cannot start with these options, in one line, or None."""
    unknown = sorted(set(options.bands) - set(MEASURES))
    if unknown:
        known = ", ".join(sorted(MEASURES))
        return f"FHIR_MONITORING_BANDS: {', '.join(unknown)} not among {known}"
    for code, (low, high) in options.bands.items():
        if low is not None and high is not None and low > high:
            return f"FHIR_MONITORING_BANDS: {code} has low {low} above high {high}"
    return None


def warm_units() -> None:
    """Build the UCUM table in the background now (a server), not on the first reading in
    another unit (which would wait seconds for it)."""
    units.warm_in_background()
