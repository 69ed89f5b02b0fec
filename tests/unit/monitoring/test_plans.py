"""Thresholds (adapters.monitoring.plans): bands, the Goals that set them, their checks."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.monitoring.plans import Band, Plan, _add_bands, check_goal
from adapters.monitoring.vitals import HEART_RATE, TEMPERATURE, WEIGHT
from fhir_server.errors import Unprocessable

UCUM = "http://unitsofmeasure.org"


def goal(*targets: dict[str, Any], status: str = "active", patient: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "Goal",
        "lifecycleStatus": status,
        "description": {"text": "thresholds"},
        "subject": {"reference": f"Patient/{patient}"},
        "target": list(targets),
    }


def target(code: str, low: Any = None, high: Any = None, unit: str = "/min") -> dict[str, Any]:
    window = {}
    for end, value in (("low", low), ("high", high)):
        if value is not None:
            window[end] = {"value": value, "system": UCUM, "code": unit}
    return {
        "measure": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "detailRange": window,
    }


@pytest.mark.parametrize(
    ("low", "high", "value", "side"),
    [
        (50, 100, 49.9, "below"),
        (50, 100, 50, None),
        (50, 100, 100, None),
        (50, 100, 100.1, "above"),
        (None, 100, -5, None),
        (90, None, 1000, None),
        (90, None, 89, "below"),
    ],
)
def test_a_band_says_which_side_a_value_falls(low, high, value, side) -> None:
    assert Band(low, high, "default").breach(value) == side


def test_goals_set_bands_in_the_stored_unit() -> None:
    plan = Plan()
    _add_bands(plan, "g1", goal(target("8310-5", 95, 100.4, "[degF]")), "p1")
    _add_bands(plan, "g2", goal(target("8867-4", high=110)), "p1")
    temperature, heart = plan.band(TEMPERATURE), plan.band(HEART_RATE)
    assert temperature and temperature.low == pytest.approx(35.0)
    assert temperature.high == pytest.approx(38.0) and temperature.source == "Goal/g1"
    assert heart == Band(None, 110.0, "Goal/g2")
    assert plan.band(WEIGHT) is None


def test_goals_that_are_not_active_or_not_the_patients_set_nothing() -> None:
    plan = Plan()
    _add_bands(plan, "g1", goal(target("8867-4", 50, 90), status="cancelled"), "p1")
    _add_bands(plan, "g2", goal(target("8867-4", 50, 90), patient="p2"), "p1")
    assert plan.bands == {}


def test_a_goal_with_an_unusable_band_is_refused() -> None:
    with pytest.raises(Unprocessable) as error:
        check_goal(goal(target("29463-7", 60, 90, "mm[Hg]")))
    assert error.value.issues[0].expression == ("Goal.target[0].detailRange.low.code",)
    with pytest.raises(Unprocessable) as error:
        check_goal(goal(target("8867-4", 100, 50)))
    assert error.value.issues[0].expression == ("Goal.target[0].detailRange",)
    fine = goal(target("29463-7", 60, 90, "kg"), {"measure": {"text": "walk daily"}})
    assert check_goal(fine) is fine
