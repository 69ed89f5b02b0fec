"""Every shipped model gives scikit-learn's outputs on the held-out rows (|Δ| < 1e-5), the
training scripts regenerate the shipped files byte for byte, and the parity check catches
skl2onnx issue #1246 (CalibratedClassifierCV around a Pipeline: wrong probabilities)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cds_hooks.models import SHIPPED, parity, train_breast_cancer, train_diabetes
from cds_hooks.models.manifest import MODEL_CARD, read_manifest
from cds_hooks.models.training import OPSET, export

SHIPPED_PACKAGES = ["diabetes-progression", "breast-cancer-fna-svm", "breast-cancer-fna-rf"]


def test_every_shipped_package_has_a_card_that_says_what_it_is_not_for() -> None:
    found = sorted(p.name for p in SHIPPED.iterdir() if (p / "manifest.json").is_file())
    assert found == sorted(SHIPPED_PACKAGES)
    for name in found:
        card = (SHIPPED / name / MODEL_CARD).read_text()
        for section in ("## Intended use", "## Training data", "## Features", "## Metrics"):
            assert section in card, (name, section)
        assert "## Known limits" in card and "**Not for clinical use.**" in card
        assert "cross-validation" in card.lower() or "CV" in card
        assert read_manifest(SHIPPED / name).model.opset == OPSET


def test_the_diabetes_model_matches_scikit_learn() -> None:
    _, held_out, _, _ = train_diabetes.data()
    model = (SHIPPED / "diabetes-progression" / "model.onnx").read_bytes()
    result = parity.check(train_diabetes.fit(), model, "variable", held_out)
    assert result.rows == len(held_out) > 100
    assert result.ok, result


@pytest.mark.parametrize("package", ["breast-cancer-fna-svm", "breast-cancer-fna-rf"])
def test_the_fna_classifiers_match_scikit_learn(package: str) -> None:
    _, held_out, _, _ = train_breast_cancer.data()
    model = (SHIPPED / package / "model.onnx").read_bytes()
    result = parity.check(train_breast_cancer.fit(package), model, "probabilities", held_out)
    assert result.rows == len(held_out) > 100
    assert result.ok, result


def test_the_parity_check_flags_calibration_around_a_pipeline() -> None:
    """skl2onnx converts this without error; its probabilities are wrong (issue #1246)."""
    train, held_out, labels, _ = train_breast_cancer.data()
    pipeline = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(max_iter=500))])
    wrapped = CalibratedClassifierCV(pipeline, method="sigmoid", cv=3).fit(train, labels)
    result = parity.check(wrapped, export(wrapped, train.shape[1]), "probabilities", held_out)
    assert not result.ok
    assert result.max_abs_diff > 1e-2


def test_the_parity_check_passes_the_same_model_calibrated_inside_the_pipeline() -> None:
    train, held_out, labels, _ = train_breast_cancer.data()
    calibrated = CalibratedClassifierCV(LogisticRegression(max_iter=500), cv=3)
    pipeline = Pipeline([("scale", StandardScaler()), ("lr", calibrated)]).fit(train, labels)
    assert parity.check(pipeline, export(pipeline, train.shape[1]), "probabilities", held_out).ok


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.*")}


def test_the_training_scripts_regenerate_the_shipped_files(tmp_path: Path) -> None:
    train_breast_cancer.build(tmp_path, tmp_path / "fna-features.json")
    train_diabetes.build(tmp_path / "diabetes-progression")
    for package in SHIPPED_PACKAGES:
        assert _files(tmp_path / package) == _files(SHIPPED / package), package
    shipped_codes = train_breast_cancer.CODE_SYSTEM_FILE.read_bytes()
    assert (tmp_path / "fna-features.json").read_bytes() == shipped_codes
    assert json.loads(shipped_codes)["count"] == 31


def test_exported_models_take_float32_and_give_tensors_not_zipmaps() -> None:
    import onnxruntime as ort

    for package in SHIPPED_PACKAGES:
        manifest = read_manifest(SHIPPED / package)
        session = ort.InferenceSession(str(SHIPPED / package / "model.onnx"))
        (features,) = session.get_inputs()
        assert features.type == "tensor(float)"
        assert features.shape[1] == len(manifest.inputs)
        outputs = {o.name: o.type for o in session.get_outputs()}
        assert outputs[manifest.model.output] == "tensor(float)"
        row = np.zeros((1, len(manifest.inputs)), dtype=np.float32)
        assert session.run([manifest.model.output], {features.name: row})[0].dtype == np.float32
