"""The Pooled Cohort Equations against published values.

Source: Goff DC Jr et al. 2013 ACC/AHA Guideline on the Assessment of Cardiovascular Risk,
Circulation 2014;129(25 Suppl 2):S49-S73, Appendix, Table A (https://doi.org/10.1161/
01.cir.0000437741.48606.98). Its worked example is a 55-year-old with total cholesterol
213 mg/dL, HDL-C 50 mg/dL, untreated systolic BP 120 mm Hg, non-smoker, no diabetes:
individual sums -29.67 / 86.16 / 60.69 / 18.97 and 10-year risks 2.1 % (white women), 3.0 %
(African-American women), 5.3 % (white men) and 6.1 % (African-American men).

The treated and smoker variants of the same profile are the values the ACC/AHA risk
estimator gives (its spreadsheet coefficients, with more digits than Table A: baseline
survival 0.96652 / 0.95334 / 0.91436 / 0.89536 and means -29.1817 / 86.6081 / 61.1816 /
19.5425), rounded to one decimal as the estimator displays them. The service uses Table A.
"""

from __future__ import annotations

import pytest

from cds_hooks.rules.pooled_cohort import RiskFactors, individual_sum, ten_year_risk

# (race, sex) -> (untreated non-smoker, treated non-smoker, untreated smoker), in percent.
WORKED = {
    ("white", "female"): (2.1, 2.8, 5.0),
    ("african-american", "female"): (3.0, 4.6, 5.9),
    ("white", "male"): (5.3, 6.3, 10.0),
    ("african-american", "male"): (6.1, 9.9, 10.3),
}
TABLE_A_SUMS = {
    ("white", "female"): -29.67,
    ("african-american", "female"): 86.16,
    ("white", "male"): 60.69,
    ("african-american", "male"): 18.97,
}
VARIANTS = ((False, False), (True, False), (False, True))  # (treated BP, smoker)


def _profile(race, sex, treated=False, smoker=False, **changes):
    values = {
        "age": 55,
        "sex": sex,
        "race": race,
        "total_cholesterol": 213,
        "hdl": 50,
        "systolic_bp": 120,
        "treated_bp": treated,
        "smoker": smoker,
        "diabetes": False,
    }
    values.update(changes)
    return RiskFactors(**values)


@pytest.mark.parametrize(
    ("group", "variant", "expected"),
    [(group, i, values[i]) for group, values in WORKED.items() for i in range(3)],
    ids=lambda v: "-".join(v) if isinstance(v, tuple) else str(v),
)
def test_the_twelve_worked_values_hold_within_a_tenth_of_a_point(group, variant, expected):
    treated, smoker = VARIANTS[variant]
    risk = ten_year_risk(_profile(group[0], group[1], treated=treated, smoker=smoker))
    assert abs(risk - expected) <= 0.1, (group, VARIANTS[variant], risk)


@pytest.mark.parametrize("group", list(TABLE_A_SUMS))
def test_individual_sums_match_table_a(group):
    assert individual_sum(_profile(*group)) == pytest.approx(TABLE_A_SUMS[group], abs=0.02)


@pytest.mark.parametrize(
    ("race", "sex", "tc", "hdl", "expected"),
    [
        # A second published set: the unit tests of Cerner's SMART ASCVD risk calculator
        # (github.com/cerner/ascvd-risk-calculator, Apache-2.0): 46 years, SBP 140 treated,
        # smoker, diabetic.
        ("white", "male", 150, 40, 12.2),
        ("african-american", "male", 150, 40, 24.9),
        ("white", "female", 141, 34, 10.3),
        ("african-american", "female", 141, 34, 26.8),
    ],
)
def test_a_high_risk_profile_matches_a_second_calculator(race, sex, tc, hdl, expected):
    factors = _profile(
        race,
        sex,
        age=46,
        total_cholesterol=tc,
        hdl=hdl,
        systolic_bp=140,
        treated=True,
        smoker=True,
        diabetes=True,
    )
    # Table A's rounded coefficients against the spreadsheet's: a few hundredths of a point
    # at low risk, up to 0.2 at this risk level.
    assert abs(ten_year_risk(factors) - expected) <= 0.2


def test_each_risk_factor_raises_the_risk():
    base = ten_year_risk(_profile("white", "male"))
    assert ten_year_risk(_profile("white", "male", diabetes=True)) > base
    assert ten_year_risk(_profile("white", "male", age=65)) > base
    assert ten_year_risk(_profile("white", "male", hdl=35)) > base
    assert ten_year_risk(_profile("white", "male", systolic_bp=150)) > base


@pytest.mark.parametrize("age", [39, 80, 20, 95])
def test_ages_outside_40_to_79_are_refused(age):
    with pytest.raises(ValueError, match="40-79"):
        ten_year_risk(_profile("white", "female", age=age))


@pytest.mark.parametrize("age", [40, 79])
def test_the_bounds_are_inside(age):
    assert 0 < ten_year_risk(_profile("white", "female", age=age)) < 100


def test_non_positive_values_are_refused():
    with pytest.raises(ValueError, match="positive"):
        ten_year_risk(_profile("white", "male", hdl=0))
