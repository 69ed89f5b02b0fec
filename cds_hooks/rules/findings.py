"""What a rule service found for each input: a usable value, or why it cannot use one.

Cards list both (inputs used with value, unit and date; inputs missing or too old with the
limit), and a service never computes a score while a required finding has a problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cds_hooks.rules.fhirdata import JSON, coded_value, observation_date, observation_stands


@dataclass(frozen=True, slots=True)
class Finding:
    """One input: `value` when usable (`shown` says what it was), else `problem`."""

    label: str
    value: Any = None
    shown: str | None = None
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        return f"- {self.label}: {self.shown if self.usable else self.problem}"


def missing(label: str, what: str = "none on record") -> Finding:
    return Finding(label, problem=what)


def day(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment else "an unknown date"


def limit_text(limit: timedelta) -> str:
    days = limit.days
    if days % 365 == 0:
        years = days // 365
        return f"{years} year" + ("s" if years > 1 else "")
    return f"{days} days"


def latest_observation(
    observations: Iterable[JSON],
    label: str,
    system: str,
    code: str,
    limit: timedelta,
    now: datetime,
    read: Callable[[Any], tuple[Any, str] | str],
) -> Finding:
    """The newest standing Observation coded `system|code` (or with such a component).

    `read` turns its value[x] into (value, shown text) or a problem text (e.g. a unit that
    cannot be converted). An Observation without a date cannot show it is recent enough,
    and one older than `limit` is refused with the limit named."""
    found = [
        (observation_date(o), value)
        for o in observations
        if observation_stands(o) and (value := coded_value(o, system, code)) is not None
    ]
    if not found:
        return missing(label, f"none on record ({code})")
    found.sort(key=lambda pair: pair[0] or datetime.min.replace(tzinfo=now.tzinfo), reverse=True)
    when, value = found[0]
    if when is None:
        return missing(label, "the latest result has no date")
    if now - when > limit:
        return missing(
            label, f"the latest, of {day(when)}, is older than the {limit_text(limit)} limit"
        )
    outcome = read(value)
    if isinstance(outcome, str):
        return missing(label, f"the latest, of {day(when)}: {outcome}")
    number, shown = outcome
    return Finding(label, number, f"{shown} on {day(when)}")


def summary_list(labels: list[str], prefix: str, room: int = 139) -> str:
    """`prefix` + the labels, joined, shortened to fit a card summary of `room` characters."""
    text = prefix + ", ".join(labels)
    if len(text) <= room:
        return text
    return prefix + f"{len(labels)} inputs (see details)"
