"""The model registry's services over real HTTP: a sandbox-like client resolves their
prefetch with `POST [type]/_search` (or leaves it to the server), calls them, and checks each
card against the band the model gives, for patients that have and lack each input."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from cds_hooks.models import SHIPPED, ModelService
from cds_hooks.models import train_breast_cancer as fna
from cds_hooks.models import train_diabetes as diabetes
from cds_hooks.models.parity import onnx_output

UCUM = "http://unitsofmeasure.org"
RECENT = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
OLD = (datetime.now(UTC) - timedelta(days=800)).strftime("%Y-%m-%dT%H:%M:%SZ")
DIABETES_ROW = diabetes.data()[1][0]
FNA_ROWS = fna.data()[1]


def coded(code: str) -> dict[str, Any]:
    system, _, value = code.partition("|")
    return {"coding": [{"system": system, "code": value}]}


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def observation(oid: str, patient: str, code: str, when: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": coded(code),
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        **value,
    }


def diabetes_patient(pid: str, hdl_when: str | None = RECENT) -> list[dict[str, Any]]:
    """A patient with the first held-out row's values (HDL dated `hdl_when`, or none)."""
    age, sex, bmi, bp, tc, ldl, hdl, tch, ltg, glu = (float(v) for v in DIABETES_ROW)
    born = f"{datetime.now(UTC).year - int(age) - 1}-12-31"  # completed years: age
    values = {
        "bmi": (bmi, "kg/m2"),
        "bp": (bp / 7.50062, "kPa"),  # mm[Hg] recorded in kPa: converted by the service
        "tc": (tc, "mg/dL"),
        "ldl": (ldl, "mg/dL"),
        "hdl": (hdl, "mg/dL"),
        "tch": (tch, "1"),
        "ltg": (math.exp(ltg), "mg/dL"),
        "glu": (glu, "mg/dL"),
    }
    codes = {i["name"]: i["code"] for i in diabetes.INPUTS if "code" in i}
    gender = "female" if sex == 1 else "male"
    found: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": pid, "birthDate": born, "gender": gender}
    ]
    for name, (value, unit) in values.items():
        when = hdl_when if name == "hdl" else RECENT
        if when is not None:
            found.append(
                observation(
                    f"{pid}-{name}",
                    pid,
                    codes[name],
                    when,
                    valueQuantity=quantity(value, unit),
                )
            )
    return found


def fna_patient(pid: str, row: np.ndarray) -> list[dict[str, Any]]:
    components = [
        {
            "code": coded(f"{fna.CODE_SYSTEM}|{fna.feature_code(name)}"),
            "valueQuantity": quantity(float(value), "1"),
        }
        for name, value in zip(fna.names(), row, strict=True)
    ]
    panel = observation(
        f"{pid}-fna", pid, f"{fna.CODE_SYSTEM}|{fna.PANEL}", RECENT, component=components
    )
    return [{"resourceType": "Patient", "id": pid, "gender": "female"}, panel]


def output(package: str, name: str, row: np.ndarray) -> float:
    model = (SHIPPED / package / "model.onnx").read_bytes()
    return float(onnx_output(model, name, row.reshape(1, -1))[0, 0])


MALIGNANT_ROW = next(
    r for r in FNA_ROWS if output("breast-cancer-fna-svm", "probabilities", r) > 0.9
)
BENIGN_ROW = next(r for r in FNA_ROWS if output("breast-cancer-fna-svm", "probabilities", r) < 0.1)


@pytest.fixture(scope="module")
def stack(cds_stack_factory):
    services = [
        ModelService(SHIPPED / "diabetes-progression"),
        ModelService(SHIPPED / "breast-cancer-fna-svm"),
    ]
    resources = [
        *diabetes_patient("dm-full"),
        *diabetes_patient("dm-no-hdl", hdl_when=None),
        *diabetes_patient("dm-old-hdl", hdl_when=OLD),
        *fna_patient("fna-malignant", MALIGNANT_ROW),
        *fna_patient("fna-benign", BENIGN_ROW),
        {"resourceType": "Patient", "id": "fna-none", "gender": "female"},
    ]
    return cds_stack_factory(services, resources)


def card_of(answer) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    cards = answer.json()["cards"]
    assert len(cards) == 1
    card: dict[str, Any] = cards[0]
    return card


def test_discovery_lists_the_model_services(stack) -> None:
    services = {s["id"]: s for s in stack.client.discovery().json()["services"]}
    assert set(services) == {"diabetes-progression", "breast-cancer-fna-svm"}
    assert len(services["diabetes-progression"]["prefetch"]) == 9  # Patient + 8 Observations


def test_the_diabetes_card_gives_the_models_band(stack) -> None:
    score = output("diabetes-progression", "variable", DIABETES_ROW) * diabetes.TARGET_SCALE
    card = card_of(stack.client.call_service("diabetes-progression", patient_id="dm-full"))
    assert card["summary"].startswith(f"Diabetes progression score {score:.0f}:")
    assert "Mean blood pressure" in card["detail"] and "kPa" in card["detail"]


@pytest.mark.parametrize(
    ("patient", "why"),
    [("dm-no-hdl", "HDL cholesterol: missing"), ("dm-old-hdl", "HDL cholesterol: too old")],
)
def test_a_missing_or_old_input_is_named_instead_of_a_score(stack, patient, why) -> None:
    card = card_of(stack.client.call_service("diabetes-progression", patient_id=patient))
    assert card["summary"].endswith("not computed, 1 input(s) missing")
    assert why in card["detail"]


def test_the_server_fetches_the_prefetch_itself(stack) -> None:
    answer = stack.client.call_service(
        "diabetes-progression",
        patient_id="dm-full",
        prefetch=False,
        fhir_server=stack.server.base,
    )
    assert card_of(answer)["summary"].startswith("Diabetes progression score")


@pytest.mark.parametrize(
    ("patient", "indicator", "words"),
    [
        ("fna-malignant", "warning", "high probability of malignancy"),
        ("fna-benign", "info", "low probability of malignancy"),
        ("fna-none", "info", "not computed, 30 input(s) missing"),
    ],
)
def test_the_fna_card_gives_the_models_band(stack, patient, indicator, words) -> None:
    card = card_of(stack.client.call_service("breast-cancer-fna-svm", patient_id=patient))
    assert card["indicator"] == indicator
    assert words in card["summary"]
