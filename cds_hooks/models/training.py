"""What the training scripts share: ONNX export (float32 input, no ZipMap, a fixed opset),
metrics with cross-validation, and writing a package folder. Needs scikit-learn, skl2onnx and
onnx (the `dev` extra); nothing at run time imports this module.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import skl2onnx
import sklearn
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

from cds_hooks.models.manifest import MANIFEST, MODEL_CARD

OPSET = 17  # the default ONNX domain; the ai.onnx.ml domain at 3
INPUT_NAME = "features"


def export(estimator: Any, width: int, name: str = "model") -> bytes:
    """`estimator` as ONNX: one float32 input of `width` columns, probabilities as a tensor,
    the graph called `name` (skl2onnx would name it with a random UUID)."""
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    with warnings.catch_warnings():
        # skl2onnx's SVC converter reads `probA_`, which scikit-learn 1.9 flags as deprecated
        # (for `SVC(probability=True)`, which these models do not use) even when it is empty.
        warnings.filterwarnings("ignore", message="Attribute `prob[AB]_`", category=FutureWarning)
        model = convert_sklearn(
            estimator,
            initial_types=[(INPUT_NAME, FloatTensorType([None, width]))],
            target_opset={"": OPSET, "ai.onnx.ml": 3},
            options=options,
        )
    model.graph.name = name
    # skl2onnx lists the opsets in set order (it varies with the hash seed): sort them, so
    # that the same model always gives the same bytes
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, version in opsets:
        model.opset_import.add(domain=domain, version=version)
    return bytes(model.SerializeToString())


def versions() -> str:
    return (
        f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}"
    )


def mean_sd(scores: Any) -> str:
    values = np.asarray(scores, dtype=np.float64)
    return f"{values.mean():.3f} ± {values.std():.3f}"


def write_package(folder: Path, model: bytes, manifest: dict[str, Any], card: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / manifest["model"]["file"]).write_bytes(model)
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (folder / MANIFEST).write_text(text, encoding="utf-8")
    (folder / MODEL_CARD).write_text(card, encoding="utf-8")
