"""Parity of an exported model with the scikit-learn estimator it came from.

skl2onnx can convert a model without error and still compute something else: its issue
#1246, `CalibratedClassifierCV` around a `Pipeline`, gives wrong probabilities. So every
shipped model is checked on held-out rows: onnxruntime's output against scikit-learn's
(`predict_proba` for classifiers, `predict` for regressors), all columns, |Δ| < 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

TOLERANCE = 1e-5


@dataclass(frozen=True, slots=True)
class Parity:
    rows: int
    max_abs_diff: float
    tolerance: float = TOLERANCE

    @property
    def ok(self) -> bool:
        return bool(self.max_abs_diff < self.tolerance)


def reference_output(estimator: Any, rows: np.ndarray) -> np.ndarray:
    """scikit-learn's answer: class probabilities for a classifier, else predictions."""
    if hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict_proba(rows), dtype=np.float64)
    return np.asarray(estimator.predict(rows), dtype=np.float64).reshape(len(rows), -1)


def onnx_output(model: bytes, output: str, rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (result,) = session.run([output], {name: rows.astype(np.float32)})
    return np.asarray(result, dtype=np.float64).reshape(len(rows), -1)


def check(estimator: Any, model: bytes, output: str, rows: np.ndarray) -> Parity:
    """Compare `model`'s `output` with the estimator's on `rows` (given as float32 to both)."""
    features = np.asarray(rows, dtype=np.float32)
    expected = reference_output(estimator, features)
    actual = onnx_output(model, output, features)
    if expected.shape != actual.shape:
        return Parity(len(features), float("inf"))
    return Parity(len(features), float(np.max(np.abs(expected - actual))))
