"""Train the two breast-cancer FNA classifiers (SVM, random forest) and write their packages
and the local CodeSystem of their features (`python -m cds_hooks.models.train_breast_cancer
[FOLDER]`); seeded, so the files come out the same each run.

Data: scikit-learn's bundled Wisconsin Diagnostic Breast Cancer dataset (569 fine-needle
aspirates, 30 features of the imaged cell nuclei: mean, standard error and worst of ten
measurements). No standard code system names these features, so they are recorded as the
components of one panel Observation, coded with this project's local CodeSystem
(`CODE_SYSTEM`). Target: malignant (class 0) or benign (class 1).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from cds_hooks.models import SHIPPED
from cds_hooks.models.training import OPSET, export, mean_sd, versions, write_package

SEED = 0
CODE_SYSTEM = "urn:fhir-server:CodeSystem:fna-features"
PANEL = "fna-panel"
CODE_SYSTEM_FILE = Path(__file__).parent / "codesystems" / "fna-features.json"
MAX_AGE_DAYS = 90
MALIGNANT = 0  # the dataset's class 0; the models' probability column read by the cards


def feature_code(name: str) -> str:
    """'mean radius' -> 'mean-radius', 'radius error' -> 'radius-error'."""
    return name.replace(" ", "-")


def names() -> list[str]:
    return [str(n) for n in load_breast_cancer().feature_names]


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and held-out rows (75/25, stratified, seeded): X_train, X_test, y_train, y_test."""
    features, target = load_breast_cancer(return_X_y=True)
    split = train_test_split(
        features.astype(np.float32), target, test_size=0.25, random_state=SEED, stratify=target
    )
    return split[0], split[1], split[2], split[3]


def svm() -> Pipeline:
    """Scaling, then an SVM with Platt (sigmoid) calibration. The calibration sits inside the
    pipeline: `CalibratedClassifierCV` around a whole `Pipeline` is skl2onnx issue #1246."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    calibrated = CalibratedClassifierCV(SVC(C=1.0), method="sigmoid", ensemble=False, cv=folds)
    return Pipeline([("scale", StandardScaler()), ("svc", calibrated)])


def forest() -> RandomForestClassifier:
    return RandomForestClassifier(
        n_estimators=100, max_depth=6, min_samples_leaf=2, random_state=SEED, n_jobs=1
    )


MODELS: dict[str, dict[str, Any]] = {
    "breast-cancer-fna-svm": {
        "make": svm,
        "kind": "support vector machine",
        "spec": "Pipeline(StandardScaler(), CalibratedClassifierCV(SVC(C=1.0, kernel='rbf'), "
        f"method='sigmoid', ensemble=False, cv=StratifiedKFold(5, shuffle=True, random_state="
        f"{SEED})))",
    },
    "breast-cancer-fna-rf": {
        "make": forest,
        "kind": "random forest",
        "spec": "RandomForestClassifier(n_estimators=100, max_depth=6, min_samples_leaf=2, "
        f"random_state={SEED})",
    },
}


def fit(package: str) -> ClassifierMixin:
    x_train, _, y_train, _ = data()
    model: ClassifierMixin = MODELS[package]["make"]().fit(x_train, y_train)
    return model


def metrics(package: str) -> dict[str, str]:
    x_train, x_test, y_train, y_test = data()
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    scores = cross_validate(
        MODELS[package]["make"](), x_train, y_train, cv=folds, scoring=("roc_auc", "accuracy")
    )
    model = fit(package)
    benign = np.asarray(model.predict_proba(x_test))[:, 1]
    return {
        "cv_auc": mean_sd(scores["test_roc_auc"]),
        "cv_accuracy": mean_sd(scores["test_accuracy"]),
        "test_auc": f"{roc_auc_score(y_test, benign):.3f}",
        "test_accuracy": f"{accuracy_score(y_test, (benign >= 0.5).astype(int)):.3f}",
    }


def inputs() -> list[dict[str, Any]]:
    return [
        {
            "name": feature_code(name).replace("-", "_"),
            "label": name,
            "source": "observation",
            "code": f"{CODE_SYSTEM}|{PANEL}",
            "component": f"{CODE_SYSTEM}|{feature_code(name)}",
            "unit": "1",
            "max_age_days": MAX_AGE_DAYS,
        }
        for name in names()
    ]


def bands(kind: str) -> list[dict[str, Any]]:
    title = f"FNA {kind}"
    return [
        {"below": 0.2, "indicator": "info",
         "summary": f"{title}: low probability of malignancy ({{value:.0%}})"},
        {"below": 0.5, "indicator": "warning",
         "summary": f"{title}: intermediate probability of malignancy ({{value:.0%}})"},
        {"indicator": "warning",
         "summary": f"{title}: high probability of malignancy ({{value:.0%}})",
         "detail": "The aspirate's features resemble the malignant cases of the training set."},
    ]  # fmt: skip


def manifest(package: str) -> dict[str, Any]:
    kind = MODELS[package]["kind"]
    return {
        "id": package,
        "hook": "patient-view",
        "title": f"Breast FNA classifier, {kind} (demonstration model)",
        "description": f"Probability that the latest breast fine-needle aspirate is malignant, "
        f"from its 30 nuclear features ({kind}; not for clinical use).",
        "source_label": f"Breast FNA {kind} (Wisconsin diagnostic breast cancer dataset)",
        "model": {"file": "model.onnx", "opset": OPSET, "output": "probabilities",
                  "column": MALIGNANT},
        "inputs": inputs(),
        "bands": bands(kind),
        "not_for_clinical_use": True,
    }  # fmt: skip


def card(package: str, figures: dict[str, str]) -> str:
    spec = MODELS[package]
    features = "\n".join(f"| {feature_code(n)} | {n} |" for n in names())
    return f"""# Model card: breast FNA classifier, {spec["kind"]} (demonstration)

**Not for clinical use.** A demonstration of the model registry, trained on a small public
teaching dataset.

## Intended use
Shows, in a `patient-view` card, the probability of malignancy the model gives the latest
breast fine-needle aspirate whose features were recorded, beside the features it used. It is
not a diagnostic device: cytology and histology decide.

## Training data
scikit-learn's bundled Wisconsin Diagnostic Breast Cancer dataset (Street, Wolberg,
Mangasarian 1993; UCI): 569 aspirates, 212 malignant and 357 benign, 30 features computed
from a digitized image of the aspirate. Split 75/25, stratified (seed {SEED}); the held-out
quarter is used for the metrics and the parity test.

## Features and their FHIR source
One Observation per aspirate, coded `{CODE_SYSTEM}|{PANEL}`, with one component per
feature coded in this project's local CodeSystem `{CODE_SYSTEM}` (no LOINC or SNOMED code
names these image features). Values are unitless as the dataset records them (UCUM `1`). A
panel older than {MAX_AGE_DAYS} days counts as missing.

| component code | feature |
|---|---|
{features}

## Model
`{spec["spec"]}`, exported with skl2onnx to ONNX opset {OPSET} (ai.onnx.ml 3), ZipMap off,
float32 input `features` of 30 columns, output `probabilities` (column {MALIGNANT}:
malignant). Built with {versions()}.

## Metrics (malignant vs benign)
| | ROC AUC | accuracy at 0.5 |
|---|---|---|
| 5-fold stratified CV, training rows (mean ± sd) | {figures["cv_auc"]} | {figures["cv_accuracy"]} |
| held-out rows | {figures["test_auc"]} | {figures["test_accuracy"]} |

## Known limits
- 569 aspirates from one centre (University of Wisconsin, 1990s) and one imaging method; the
  features are only reproducible with the same image analysis.
- Probabilities are not calibrated for any population; the bands are for demonstration.
- No probability is given when the panel or any of its 30 components is missing or too old:
  the card lists what is missing.
"""


def code_system() -> dict[str, Any]:
    concepts = [{"code": PANEL, "display": "Breast fine-needle aspirate nuclear features"}]
    concepts += [{"code": feature_code(n), "display": f"FNA nuclei, {n}"} for n in names()]
    return {
        "resourceType": "CodeSystem",
        "id": "fna-features",
        "url": CODE_SYSTEM,
        "version": "1.0.0",
        "name": "FnaFeatures",
        "title": "Breast fine-needle aspirate nuclear features (Wisconsin diagnostic dataset)",
        "status": "active",
        "experimental": True,
        "content": "complete",
        "caseSensitive": True,
        "count": len(concepts),
        "concept": concepts,
    }


def build(root: Path = SHIPPED, code_system_file: Path = CODE_SYSTEM_FILE) -> None:
    for package in MODELS:
        model = export(fit(package), len(names()), package)
        write_package(root / package, model, manifest(package), card(package, metrics(package)))
    code_system_file.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(code_system(), indent=2, ensure_ascii=False) + "\n"
    code_system_file.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        build(Path(sys.argv[1]), Path(sys.argv[1]) / "fna-features.json")
    else:
        build()
