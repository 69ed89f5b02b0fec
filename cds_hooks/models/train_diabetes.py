"""Train the diabetes progression model and write its package (`python -m
cds_hooks.models.train_diabetes [FOLDER]`); seeded, so the files come out the same each run.

Data: scikit-learn's bundled diabetes dataset (Efron et al. 2004, 442 patients), unscaled
(`load_diabetes(scaled=False)`): age, sex, BMI, mean blood pressure and six blood serum
measurements at baseline; the target is a quantitative measure of disease progression one
year later. Model: gradient-boosted regression trees.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import KFold, cross_validate, train_test_split

from cds_hooks.models import SHIPPED
from cds_hooks.models.training import OPSET, export, mean_sd, versions, write_package

SEED = 0
PACKAGE = SHIPPED / "diabetes-progression"
LOINC = "http://loinc.org"
CHOLESTEROL_G_PER_MOL = 386.65
TRIGLYCERIDE_G_PER_MOL = 885.7  # triolein, the usual stand-in for "triglycerides"
GLUCOSE_G_PER_MOL = 180.16
# The model learns progression / 100: float32 (the ONNX tree output) carries values near 1 to
# about 1e-7, where values near 300 round by 1.5e-5, more than the parity tolerance.
TARGET_SCALE = 100.0
MAX_AGE_DAYS = 365

# The dataset's columns in order, as manifest inputs (their FHIR source).
INPUTS: list[dict[str, Any]] = [
    {"name": "age", "source": "patient-age", "label": "Age"},
    {"name": "sex", "source": "patient-gender", "label": "Sex", "values": {"female": 1, "male": 2}},
    {"name": "bmi", "label": "BMI", "code": f"{LOINC}|39156-5", "unit": "kg/m2"},
    {"name": "bp", "label": "Mean blood pressure", "code": f"{LOINC}|8478-0", "unit": "mm[Hg]"},
    {"name": "tc", "label": "Total cholesterol", "code": f"{LOINC}|2093-3", "unit": "mg/dL",
     "molar_mass": CHOLESTEROL_G_PER_MOL},
    {"name": "ldl", "label": "LDL cholesterol", "code": f"{LOINC}|2089-1", "unit": "mg/dL",
     "molar_mass": CHOLESTEROL_G_PER_MOL},
    {"name": "hdl", "label": "HDL cholesterol", "code": f"{LOINC}|2085-9", "unit": "mg/dL",
     "molar_mass": CHOLESTEROL_G_PER_MOL},
    {"name": "tch", "label": "Total/HDL cholesterol ratio", "code": f"{LOINC}|9830-1",
     "unit": "1"},
    {"name": "ltg", "label": "Triglycerides (log)", "code": f"{LOINC}|2571-8", "unit": "mg/dL",
     "molar_mass": TRIGLYCERIDE_G_PER_MOL, "transform": "ln"},
    {"name": "glu", "label": "Glucose", "code": f"{LOINC}|2345-7", "unit": "mg/dL",
     "molar_mass": GLUCOSE_G_PER_MOL},
]  # fmt: skip
for _input in INPUTS:
    if "code" in _input:
        _input.update(source="observation", max_age_days=MAX_AGE_DAYS)

BANDS = [
    {"below": 100, "indicator": "info",
     "summary": "Diabetes progression score {value:.0f}: below 100, the lower third of the cohort"},
    {"below": 200, "indicator": "info",
     "summary": "Diabetes progression score {value:.0f}: 100-199, the middle of the cohort"},
    {"indicator": "warning",
     "summary": "Diabetes progression score {value:.0f}: 200 or more, the upper band of the cohort",
     "detail": "A higher predicted one-year progression than most of the training cohort."},
]  # fmt: skip


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and held-out rows (75/25, seeded): X_train, X_test, y_train, y_test (the
    targets divided by TARGET_SCALE)."""
    features, target = load_diabetes(return_X_y=True, scaled=False)
    split = train_test_split(features.astype(np.float32), target, test_size=0.25, random_state=SEED)
    return split[0], split[1], split[2] / TARGET_SCALE, split[3] / TARGET_SCALE


def estimator() -> GradientBoostingRegressor:
    return GradientBoostingRegressor(
        n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8, random_state=SEED
    )


def fit() -> GradientBoostingRegressor:
    x_train, _, y_train, _ = data()
    return estimator().fit(x_train, y_train)


def metrics() -> dict[str, str]:
    x_train, x_test, y_train, y_test = data()
    folds = KFold(n_splits=5, shuffle=True, random_state=SEED)
    scores = cross_validate(
        estimator(), x_train, y_train, cv=folds, scoring=("r2", "neg_mean_absolute_error")
    )
    model = fit()
    predicted = model.predict(x_test)
    return {
        "cv_r2": mean_sd(scores["test_r2"]),
        "cv_mae": mean_sd(-scores["test_neg_mean_absolute_error"] * TARGET_SCALE),
        "test_r2": f"{r2_score(y_test, predicted):.3f}",
        "test_mae": f"{mean_absolute_error(y_test, predicted) * TARGET_SCALE:.1f}",
    }


def manifest() -> dict[str, Any]:
    return {
        "id": "diabetes-progression",
        "hook": "patient-view",
        "title": "Diabetes progression (demonstration model)",
        "description": "Predicted one-year diabetes progression score from age, sex, BMI, "
        "mean blood pressure and six serum values (gradient boosting; not for clinical use).",
        "source_label": "Diabetes progression model (scikit-learn diabetes dataset)",
        "model": {
            "file": "model.onnx",
            "opset": OPSET,
            "output": "variable",
            "column": 0,
            "scale": TARGET_SCALE,
        },
        "inputs": INPUTS,
        "bands": BANDS,
        "not_for_clinical_use": True,
    }


def card(figures: dict[str, str]) -> str:
    rows = "\n".join(
        f"| {i['name']} | {i.get('label', i['name'])} | "
        f"{i.get('code', i['source'])} | {i.get('unit', '—')} |"
        for i in INPUTS
    )
    return f"""# Model card: diabetes progression (demonstration)

**Not for clinical use.** A demonstration of the model registry, trained on a small public
teaching dataset.

## Intended use
Shows, in a `patient-view` card, the one-year progression score the model predicts for an
adult with diabetes, beside the inputs it used. It is not a validated risk score and must not
guide treatment.

## Training data
scikit-learn's bundled diabetes dataset (`load_diabetes(scaled=False)`; Efron, Hastie,
Johnstone, Tibshirani, "Least Angle Regression", Annals of Statistics 2004): 442 patients,
ten baseline variables, and a quantitative measure of disease progression one year later
(25-346). Split 75/25 (seed {SEED}); the held-out quarter is used for the metrics and the
parity test.

## Features (in model order) and their FHIR source
| input | meaning | FHIR source | unit |
|---|---|---|---|
{rows}

Observations older than {MAX_AGE_DAYS} days count as missing. Values recorded in other units
are converted (UCUM; mmol/L through the molar masses: cholesterol {CHOLESTEROL_G_PER_MOL},
triglycerides {TRIGLYCERIDE_G_PER_MOL}, glucose {GLUCOSE_G_PER_MOL} g/mol).

## Model
`GradientBoostingRegressor(n_estimators=150, max_depth=2, learning_rate=0.05,
subsample=0.8, random_state={SEED})`, exported with skl2onnx to ONNX opset {OPSET}
(ai.onnx.ml 3), float32 input `features` of 10 columns, output `variable`: the score divided
by {TARGET_SCALE:.0f} (the manifest's `scale` multiplies it back), so that the float32 output
keeps the parity tolerance of 1e-5.
Built with {versions()}.

## Metrics
| | R² | MAE |
|---|---|---|
| 5-fold CV, training rows (mean ± sd) | {figures["cv_r2"]} | {figures["cv_mae"]} |
| held-out rows | {figures["test_r2"]} | {figures["test_mae"]} |

## Known limits
- 442 patients from one study; no external validation; the error (MAE above) is large next
  to the bands.
- The dataset codes sex as 1 or 2 without saying which is which; this package maps female to 1
  and male to 2, an assumption.
- `ltg` is documented only as "possibly log of serum triglycerides level"; this package
  takes the natural log of triglycerides in mg/dL, which matches the dataset's range.
- The total/HDL ratio is read from its own Observation (LOINC 9830-1), not computed.
- No risk is given when any input is missing or older than its limit: the card lists what is
  missing.
"""


def build(folder: Path = PACKAGE) -> None:
    x_train, _, _, _ = data()
    model = export(fit(), x_train.shape[1], "diabetes-progression")
    write_package(folder, model, manifest(), card(metrics()))


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE)
