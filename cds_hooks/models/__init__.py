"""The model registry: each model package folder becomes a CDS service, with no code change.

A package is a folder holding `manifest.json` (see `manifest`), the ONNX model it names and
`MODEL_CARD.md` (intended use, training data, features with their FHIR codes, metrics,
known limits). Packages are found in `packages/` beside this file (the shipped ones) and in
every folder listed in the `FHIR_CDS_MODEL_DIRS` setting (separated like PATH); each
subfolder with a manifest is one package. A package that cannot be used (bad manifest, a
model whose input width or output does not match it, no model card) stops the start with a
message that names it.

At start each package's onnxruntime session is built once (`runtime`). On a hook call the
service reads its inputs from the resolved prefetch (`inputs`: latest acceptable value,
UCUM conversion by `units`), runs the model on one float32 row, and answers one card: the
band the output falls in, or what is missing (`service`).

Inputs that no standard code system names use the project's own CodeSystems
(`codesystems/`, see `code_systems()`), which the terminology service publishes.

Training (`train_*.py`, scikit-learn and skl2onnx, not needed at run time) writes the shipped
packages; `parity` checks that an exported model gives scikit-learn's outputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cds_hooks.models.manifest import MANIFEST, MODEL_CARD, ManifestError
from cds_hooks.models.service import ModelService
from cds_hooks.models.units import warm_in_background
from fhir_server.settings import Settings

SHIPPED = Path(__file__).parent / "packages"
CODE_SYSTEMS = Path(__file__).parent / "codesystems"

__all__ = [
    "SHIPPED",
    "ManifestError",
    "ModelService",
    "code_systems",
    "package_folders",
    "services",
]


def code_systems() -> list[dict[str, Any]]:
    """The local CodeSystems the shipped packages code their inputs with (e.g. the breast FNA
    features), for the terminology service to publish."""
    return [json.loads(p.read_text("utf-8")) for p in sorted(CODE_SYSTEMS.glob("*.json"))]


def package_folders(roots: Iterable[Path]) -> Iterator[Path]:
    """Every package folder under `roots`, sorted by name within each root."""
    for root in roots:
        if not root.is_dir():
            raise ManifestError(f"the model folder {root} does not exist")
        for folder in sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()):
            if not (folder / MODEL_CARD).is_file():
                raise ManifestError(f"{folder.name}: a model package needs {MODEL_CARD}")
            yield folder


def model_dirs(settings: Settings) -> list[Path]:
    """The shipped folder, then those the settings add."""
    extra = [Path(p) for p in settings.cds_model_dirs.split(os.pathsep) if p.strip()]
    return [SHIPPED, *extra]


def services(settings: Settings) -> list[ModelService]:
    """A service per package (the `cds_hooks.registry` provider of this package); the UCUM
    table is built in the background meanwhile (`FHIR_CDS_WARM_UNITS`, on by default; off,
    the first value in a unit other than the model's builds it, which takes seconds)."""
    found = [ModelService(folder) for folder in package_folders(model_dirs(settings))]
    observed = any(i.source == "observation" for s in found for i in s.manifest.inputs)
    if observed and settings.cds_warm_units:
        warm_in_background()
    return found
