"""The breast FNA classifier services over hook calls: the 30 features arrive as the
components of one panel Observation coded in the project's local CodeSystem."""

from __future__ import annotations

import numpy as np
import pytest

from cds_hooks.models import SHIPPED, ModelService
from cds_hooks.models import train_breast_cancer as training
from cds_hooks.models.parity import onnx_output
from tests.unit.cds_models.fhir import JSON, NOW, OLD, RECENT, bundle, call, panel, patient

PANEL = f"{training.CODE_SYSTEM}|{training.PANEL}"
PACKAGES = ["breast-cancer-fna-svm", "breast-cancer-fna-rf"]


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    _, rows, _, labels = training.data()
    return rows, labels


def fna(row: np.ndarray, when: str = RECENT, drop: str | None = None) -> dict[str, JSON | None]:
    components = {
        f"{training.CODE_SYSTEM}|{training.feature_code(name)}": float(value)
        for name, value in zip(training.names(), row, strict=True)
        if name != drop
    }
    return {"patient": patient(), "mean_radius": bundle(panel(PANEL, components, when))}


def malignancy(package: str, row: np.ndarray) -> float:
    model = (SHIPPED / package / "model.onnx").read_bytes()
    return float(onnx_output(model, "probabilities", row.reshape(1, -1))[0, training.MALIGNANT])


@pytest.mark.parametrize("package", PACKAGES)
def test_one_prefetch_query_reads_the_whole_panel(package: str) -> None:
    service = ModelService(SHIPPED / package, clock=lambda: NOW)
    assert service.definition.prefetch == {
        "mean_radius": "Observation?patient={{context.patientId}}"
        f"&code={PANEL}&_sort=-date&_count=10"
    }


@pytest.mark.parametrize("package", PACKAGES)
@pytest.mark.parametrize(("label", "words"), [(0, "high probability"), (1, "low probability")])
def test_malignant_and_benign_aspirates_get_their_band(package, held_out, label, words) -> None:
    service = ModelService(SHIPPED / package, clock=lambda: NOW)
    rows, labels = held_out
    # a clear case of that class: the model's probability far from the thresholds
    row = next(
        r
        for r, y in zip(rows, labels, strict=True)
        if y == label and (malignancy(package, r) > 0.9 or malignancy(package, r) < 0.1)
    )
    card = service.evaluate(call(fna(row))).cards[0].to_json()
    assert words in card["summary"]
    assert f"({malignancy(package, row):.0%})" in card["summary"]
    assert card["indicator"] == ("warning" if label == 0 else "info")
    assert "mean radius: " in card["detail"] and "2026-05-20" in card["detail"]


def test_a_missing_component_gives_no_probability(held_out) -> None:
    service = ModelService(SHIPPED / "breast-cancer-fna-svm", clock=lambda: NOW)
    card = service.evaluate(call(fna(held_out[0][0], drop="worst area"))).cards[0].to_json()
    assert "not computed, 1 input(s) missing" in card["summary"]
    assert "worst area: missing" in card["detail"]
    assert "%" not in card["summary"]


def test_an_old_panel_is_too_old_for_every_feature(held_out) -> None:
    service = ModelService(SHIPPED / "breast-cancer-fna-rf", clock=lambda: NOW)
    card = service.evaluate(call(fna(held_out[0][0], when=OLD))).cards[0].to_json()
    assert "30 input(s) missing" in card["summary"]
    assert "mean radius: too old (2024-01-10; the limit is 90 days)" in card["detail"]


def test_no_panel_at_all(held_out) -> None:
    service = ModelService(SHIPPED / "breast-cancer-fna-rf", clock=lambda: NOW)
    card = service.evaluate(call({"patient": patient(), "mean_radius": None})).cards[0]
    assert "30 input(s) missing" in card.summary
