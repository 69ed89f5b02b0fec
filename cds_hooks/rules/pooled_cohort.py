"""The ACC/AHA Pooled Cohort Equations: the 10-year risk of a first hard ASCVD event.

Goff DC Jr et al. 2013 ACC/AHA Guideline on the Assessment of Cardiovascular Risk,
Circulation 2014;129(25 Suppl 2):S49-S73, Table A ("Equation Parameters of the Pooled Cohort
Equations for Estimation of 10-Year Risk of Hard ASCVD"): for a race-sex group,
`risk = 1 - S10 ** exp(sum(coefficient * value) - mean)`, the values being the natural logs
of age, total cholesterol (mg/dL), HDL-C (mg/dL) and systolic BP (mm Hg, treated or untreated),
their listed products with ln(age), and 0/1 for current smoking and diabetes. The equations
are derived for white and African-American adults aged 40-79; the guideline advises the
white equations for other groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Sex = Literal["female", "male"]
Race = Literal["white", "african-american"]

MIN_AGE, MAX_AGE = 40, 79


@dataclass(frozen=True, slots=True)
class Coefficients:
    ln_age: float = 0.0
    ln_age_squared: float = 0.0
    ln_tc: float = 0.0
    ln_age_ln_tc: float = 0.0
    ln_hdl: float = 0.0
    ln_age_ln_hdl: float = 0.0
    ln_treated_sbp: float = 0.0
    ln_age_ln_treated_sbp: float = 0.0
    ln_untreated_sbp: float = 0.0
    ln_age_ln_untreated_sbp: float = 0.0
    smoker: float = 0.0
    ln_age_smoker: float = 0.0
    diabetes: float = 0.0
    mean: float = 0.0  # the group's overall mean of coefficient x value
    baseline_survival: float = 1.0  # S10


# Goff et al. 2013, Table A.
TABLE_A: dict[tuple[Race, Sex], Coefficients] = {
    ("white", "female"): Coefficients(
        ln_age=-29.799,
        ln_age_squared=4.884,
        ln_tc=13.540,
        ln_age_ln_tc=-3.114,
        ln_hdl=-13.578,
        ln_age_ln_hdl=3.149,
        ln_treated_sbp=2.019,
        ln_untreated_sbp=1.957,
        smoker=7.574,
        ln_age_smoker=-1.665,
        diabetes=0.661,
        mean=-29.18,
        baseline_survival=0.9665,
    ),
    ("african-american", "female"): Coefficients(
        ln_age=17.114,
        ln_tc=0.940,
        ln_hdl=-18.920,
        ln_age_ln_hdl=4.475,
        ln_treated_sbp=29.291,
        ln_age_ln_treated_sbp=-6.432,
        ln_untreated_sbp=27.820,
        ln_age_ln_untreated_sbp=-6.087,
        smoker=0.691,
        diabetes=0.874,
        mean=86.61,
        baseline_survival=0.9533,
    ),
    ("white", "male"): Coefficients(
        ln_age=12.344,
        ln_tc=11.853,
        ln_age_ln_tc=-2.664,
        ln_hdl=-7.990,
        ln_age_ln_hdl=1.769,
        ln_treated_sbp=1.797,
        ln_untreated_sbp=1.764,
        smoker=7.837,
        ln_age_smoker=-1.795,
        diabetes=0.658,
        mean=61.18,
        baseline_survival=0.9144,
    ),
    ("african-american", "male"): Coefficients(
        ln_age=2.469,
        ln_tc=0.302,
        ln_hdl=-0.307,
        ln_treated_sbp=1.916,
        ln_untreated_sbp=1.809,
        smoker=0.549,
        diabetes=0.645,
        mean=19.54,
        baseline_survival=0.8954,
    ),
}


@dataclass(frozen=True, slots=True)
class RiskFactors:
    age: int
    sex: Sex
    race: Race
    total_cholesterol: float  # mg/dL
    hdl: float  # mg/dL
    systolic_bp: float  # mm Hg
    treated_bp: bool
    smoker: bool
    diabetes: bool


def individual_sum(f: RiskFactors) -> float:
    """Sum of coefficient x value for the group of `f` (Table A's "Individual Sum")."""
    c = TABLE_A[(f.race, f.sex)]
    ln_age, ln_tc, ln_hdl = math.log(f.age), math.log(f.total_cholesterol), math.log(f.hdl)
    ln_sbp = math.log(f.systolic_bp)
    smoker, diabetes = float(f.smoker), float(f.diabetes)
    sbp_terms = (
        (c.ln_treated_sbp + c.ln_age_ln_treated_sbp * ln_age) * ln_sbp
        if f.treated_bp
        else (c.ln_untreated_sbp + c.ln_age_ln_untreated_sbp * ln_age) * ln_sbp
    )
    return (
        c.ln_age * ln_age
        + c.ln_age_squared * ln_age**2
        + (c.ln_tc + c.ln_age_ln_tc * ln_age) * ln_tc
        + (c.ln_hdl + c.ln_age_ln_hdl * ln_age) * ln_hdl
        + sbp_terms
        + (c.smoker + c.ln_age_smoker * ln_age) * smoker
        + c.diabetes * diabetes
    )


def ten_year_risk(f: RiskFactors) -> float:
    """The estimated 10-year risk of a first hard ASCVD event, in percent (0-100).

    Raises ValueError outside the equations' domain: age not 40-79, or a non-positive lab
    or blood pressure value."""
    if not MIN_AGE <= f.age <= MAX_AGE:
        raise ValueError(f"the Pooled Cohort Equations apply to ages {MIN_AGE}-{MAX_AGE}")
    if min(f.total_cholesterol, f.hdl, f.systolic_bp) <= 0:
        raise ValueError("cholesterol, HDL and systolic blood pressure must be positive")
    c = TABLE_A[(f.race, f.sex)]
    survival: float = c.baseline_survival ** math.exp(individual_sum(f) - c.mean)
    return 100.0 * (1.0 - survival)
