"""Readings on the way in (adapters.monitoring.vitals): converted through UCUM or refused."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.monitoring.vitals import measurements, normalize
from fhir_server.errors import Unprocessable

UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}


def reading(code: str, value: Any = None, unit: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [VITAL_SIGNS],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "device": {"reference": "Device/d1"},
        "effectiveDateTime": "2026-12-01T08:00:00Z",
    }
    if unit is not None:
        out["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    return {**out, **extra}


def bp(systolic: dict[str, Any], diastolic: dict[str, Any] | None) -> dict[str, Any]:
    parts = [("8480-6", systolic), ("8462-4", diastolic)]
    return reading(
        "85354-9",
        component=[
            {"code": {"coding": [{"system": "http://loinc.org", "code": c}]}, "valueQuantity": q}
            for c, q in parts
            if q is not None
        ],
    )


def refused(resource: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(Unprocessable) as error:
        normalize(resource)
    assert error.value.status == 422
    return error.value.issues[0].expression


@pytest.mark.parametrize(
    ("code", "value", "unit", "stored", "stored_unit"),
    [
        ("29463-7", 185, "[lb_av]", 83.91, "kg"),
        ("29463-7", 70500, "g", 70.5, "kg"),
        ("8310-5", 98.6, "[degF]", 37.0, "Cel"),
        ("2339-0", 5.5, "mmol/L", 99, "mg/dL"),  # through glucose's molar mass
        ("8867-4", 72, "{beats}/min", 72, "/min"),
        ("59408-5", 0.97, "1", 97.0, "%"),
        ("2708-6", 0.97, "1", 97.0, "%"),
    ],
)
def test_other_ucum_units_are_converted_to_the_stored_one(
    code: str, value: float, unit: str, stored: float, stored_unit: str
) -> None:
    original = reading(code, value, unit)
    out = normalize(original)
    assert out["valueQuantity"]["code"] == stored_unit
    assert out["valueQuantity"]["system"] == UCUM
    assert out["valueQuantity"]["value"] == pytest.approx(stored)
    assert f"from {value} {unit}" in out["note"][-1]["text"]
    assert original["valueQuantity"]["code"] == unit  # the caller's dict is not changed


def test_a_reading_in_the_stored_unit_is_taken_as_it_is() -> None:
    original = reading("8867-4", 72, "/min")
    assert normalize(original) is original


def test_blood_pressure_components_are_converted_and_each_is_required() -> None:
    kpa = {"value": 16, "system": UCUM, "code": "kPa"}
    out = normalize(bp(kpa, {"value": 80, "system": UCUM, "code": "mm[Hg]"}))
    assert [c["valueQuantity"]["value"] for c in out["component"]] == [120, 80]
    assert refused(bp(kpa, None)) == ("Observation.component",)
    wrong = {"value": 80, "system": UCUM, "code": "kg"}
    assert refused(bp(kpa, wrong)) == ("Observation.component[1].valueQuantity.code",)


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        (reading("29463-7", 70, "mm[Hg]"), "Observation.valueQuantity.code"),
        (reading("29463-7", 70, "stone"), "Observation.valueQuantity.code"),
        (
            reading(
                "8867-4", valueQuantity={"value": 70, "system": "http://x.org", "code": "/min"}
            ),
            "Observation.valueQuantity.system",
        ),
        (
            reading("8867-4", valueQuantity={"value": 70, "system": UCUM}),
            "Observation.valueQuantity.code",
        ),
        (reading("8867-4", valueString="70 bpm"), "Observation.valueString"),
        (reading("8867-4"), "Observation.value[x]"),
        (reading("8867-4", 70, "/min", category=[]), "Observation.category"),
        (reading("8867-4", 70, "/min", subject={"reference": "Group/g"}), "Observation.subject"),
        (
            {k: v for k, v in reading("8867-4", 70, "/min").items() if k != "effectiveDateTime"},
            "Observation.effective[x]",
        ),
    ],
)
def test_bad_readings_are_refused_naming_the_element(
    resource: dict[str, Any], expression: str
) -> None:
    assert refused(resource) == (expression,)


def test_glucose_needs_no_vital_signs_category_and_absent_values_are_allowed() -> None:
    glucose = reading("2339-0", 110, "mg/dL", category=[])
    assert normalize(glucose) is glucose
    absent = reading("8867-4", dataAbsentReason={"text": "device off"})
    assert normalize(absent) is absent
    cancelled = reading("8867-4", status="entered-in-error")
    assert normalize(cancelled) is cancelled


def test_observations_that_are_not_readings_are_left_alone() -> None:
    chart = reading("29463-7", 185, "lbs")
    del chart["device"]  # a chart entry: no device, no vital-signs profile claimed
    assert normalize(chart) is chart
    claimed = {**chart, "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/bodyweight"]}}
    assert refused(claimed) == ("Observation.valueQuantity.code",)
    other = {**reading("8867-4", 70, "/min"), "code": {"text": "no LOINC"}}
    assert normalize(other) is other


def test_measurements_reads_the_stored_values() -> None:
    out = normalize(
        bp(
            {"value": 150, "system": UCUM, "code": "mm[Hg]"},
            {"value": 95, "system": UCUM, "code": "mm[Hg]"},
        )
    )
    assert [(m.code, v) for m, v in measurements(out)] == [("8480-6", 150.0), ("8462-4", 95.0)]
    assert [(m.code, v) for m, v in measurements(reading("59408-5", 91, "%"))] == [
        ("59408-5", 91.0)
    ]


@pytest.mark.parametrize(
    ("value", "unit"),
    [
        (1, "10*999999999/min"),  # a billion-digit factor: refused before it is computed
        (1, "10^999.kg"),  # overflows a float
        (1e308, "mmol/L"),  # converts to infinity
        (1, "(" * 80 + "kg"),  # longer than any unit
    ],
)
def test_hostile_units_and_values_are_refused_quickly(value: float, unit: str) -> None:
    code = "2339-0" if unit == "mmol/L" else "29463-7"
    assert refused(reading(code, value, unit)) == ("Observation.valueQuantity.code",)


def test_a_huge_value_in_another_unit_is_stored_as_a_number_json_can_hold() -> None:
    out = normalize(reading("8867-4", 1e300, "/s"))
    assert out["valueQuantity"]["value"] == pytest.approx(6e301)
    assert isinstance(out["valueQuantity"]["value"], float)
