"""The diabetes progression service over hook calls: inputs present, missing, too old, or in
other units, and the card's band checked against the model's own output."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cds_hooks.models import SHIPPED, ModelService
from cds_hooks.models import train_diabetes as training
from cds_hooks.models.parity import onnx_output
from tests.unit.cds_models.fhir import JSON, NOW, OLD, bundle, call, observation, patient

PACKAGE = SHIPPED / "diabetes-progression"
CODES = {i["name"]: i["code"] for i in training.INPUTS if "code" in i}


@pytest.fixture(scope="module")
def service() -> ModelService:
    return ModelService(PACKAGE, clock=lambda: NOW)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return training.data()[1]  # the held-out rows


def expected_score(row: np.ndarray) -> float:
    output = onnx_output((PACKAGE / "model.onnx").read_bytes(), "variable", row.reshape(1, -1))
    return float(output[0, 0]) * training.TARGET_SCALE


def prefetch(row: np.ndarray, **replace) -> dict[str, JSON | None]:
    """The FHIR form of one dataset row: a Patient and one Observation per serum value."""
    age, sex, bmi, bp, tc, ldl, hdl, tch, ltg, glu = (float(v) for v in row)
    values: dict[str, JSON | None] = {
        "bmi": observation(CODES["bmi"], bmi, "kg/m2"),
        "bp": observation(CODES["bp"], bp, "mm[Hg]"),
        "tc": observation(CODES["tc"], tc, "mg/dL"),
        "ldl": observation(CODES["ldl"], ldl, "mg/dL"),
        "hdl": observation(CODES["hdl"], hdl, "mg/dL"),
        "tch": observation(CODES["tch"], tch, "1"),
        "ltg": observation(CODES["ltg"], math.exp(ltg), "mg/dL"),
        "glu": observation(CODES["glu"], glu, "mg/dL"),
    }
    values.update(replace)
    gender = "female" if sex == 1 else "male"
    found: dict[str, JSON | None] = {"patient": patient(f"{NOW.year - int(age)}-01-01", gender)}
    found.update({k: bundle(v) if v else None for k, v in values.items()})
    return found


def row_with(rows: np.ndarray, band_test) -> np.ndarray:
    return next(row for row in rows if band_test(expected_score(row)))


def test_discovery_declares_a_prefetch_per_input(service) -> None:
    prefetch = service.definition.prefetch
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    assert prefetch["hdl"] == (
        "Observation?patient={{context.patientId}}&code=http://loinc.org|2085-9"
        "&_sort=-date&_count=10"
    )
    assert set(prefetch) == {"patient", *CODES}


@pytest.mark.parametrize(
    ("in_band", "indicator", "words"),
    [
        (lambda s: s < 100, "info", "below 100"),
        (lambda s: 100 <= s < 200, "info", "100-199"),
        (lambda s: s >= 200, "warning", "200 or more"),
    ],
)
def test_the_card_gives_the_band_of_the_models_output(service, rows, in_band, indicator, words):
    row = row_with(rows, in_band)
    card = service.evaluate(call(prefetch(row))).cards[0].to_json()
    assert card["indicator"] == indicator
    assert f"{expected_score(row):.0f}: {words}" in card["summary"]
    assert "Inputs used: Age:" in card["detail"]
    assert "HDL cholesterol" in card["detail"] and "2026-05-20" in card["detail"]
    assert "Not for clinical use" in card["detail"]
    assert card["source"]["label"].startswith("Diabetes progression model")


def test_a_missing_input_gives_no_score_but_says_what_is_missing(service, rows) -> None:
    evaluation = service.assess(call(prefetch(rows[0], hdl=None)))
    assert evaluation.output is None
    card = service.card(evaluation).to_json()
    assert card["summary"] == (
        "Diabetes progression (demonstration model): not computed, 1 input(s) missing"
    )
    assert "Missing or unusable: HDL cholesterol: missing." in card["detail"]
    assert "score" not in card["detail"].lower().split("missing or unusable")[0]
    assert card["indicator"] == "info"


def test_an_input_older_than_its_limit_counts_as_missing(service, rows) -> None:
    old_hdl = observation(CODES["hdl"], 50.0, "mg/dL", OLD)
    card = service.evaluate(call(prefetch(rows[0], hdl=old_hdl))).cards[0].to_json()
    assert "not computed" in card["summary"]
    assert "HDL cholesterol: too old (2024-01-10; the limit is 365 days)" in card["detail"]


def test_the_latest_value_is_used_whatever_the_bundle_order(service, rows) -> None:
    row = rows[0]
    found = prefetch(row)
    hdl = observation(CODES["hdl"], float(row[6]), "mg/dL")
    found["hdl"] = bundle(observation(CODES["hdl"], 10.0, "mg/dL", OLD), hdl)
    assert service.assess(call(found)).output == pytest.approx(expected_score(row), abs=1e-4)


def test_values_in_other_units_are_converted_before_the_model_runs(service, rows) -> None:
    row = rows[3]
    tc_mmol = float(row[4]) / training.CHOLESTEROL_G_PER_MOL * 10  # mg/dL -> mmol/L
    glu_mmol = float(row[9]) / training.GLUCOSE_G_PER_MOL * 10
    converted = prefetch(
        row,
        tc=observation(CODES["tc"], tc_mmol, "mmol/L"),
        glu=observation(CODES["glu"], glu_mmol, "mmol/L"),
        bp=observation(CODES["bp"], float(row[3]) * 0.133322, "kPa"),
    )
    evaluation = service.assess(call(converted))
    assert evaluation.output == pytest.approx(expected_score(row), abs=0.5)
    detail = service.card(evaluation).to_json()["detail"]
    assert f"recorded {tc_mmol} mmol/L" in detail


def test_a_unit_that_does_not_convert_makes_the_input_unusable(service, rows) -> None:
    bad = prefetch(rows[0], bmi=observation(CODES["bmi"], 25.0, "mg/dL"))
    card = service.evaluate(call(bad)).cards[0].to_json()
    assert "not computed" in card["summary"]
    assert "BMI: the value of 2026-05-20 cannot be used" in card["detail"]


def test_a_patient_without_birth_date_or_known_gender(service, rows) -> None:
    found = prefetch(rows[0])
    found["patient"] = {"resourceType": "Patient", "id": "p1", "gender": "unknown"}
    card = service.evaluate(call(found)).cards[0].to_json()
    assert "2 input(s) missing" in card["summary"]
    assert "Age: the Patient has no full birth date" in card["detail"]
    assert "Sex: gender unknown is not one the model knows" in card["detail"]


def test_a_model_output_that_is_not_finite_gives_no_band(service, rows, monkeypatch) -> None:
    monkeypatch.setattr(service.model, "predict", lambda row: float("nan"))
    card = service.evaluate(call(prefetch(rows[0]))).cards[0].to_json()
    assert card["summary"].endswith("not computed, the model gave no finite result")
    assert card["indicator"] == "info" and "Inputs used: Age:" in card["detail"]
