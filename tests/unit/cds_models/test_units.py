"""UCUM conversion of model inputs (cds_hooks.models.units)."""

from __future__ import annotations

import pytest

from cds_hooks.models.units import UnitError, convert

CHOLESTEROL = 386.65


def test_the_same_unit_is_used_as_it_is() -> None:
    assert convert(213.0, "mg/dL", "mg/dL") == 213.0


@pytest.mark.parametrize(
    ("value", "unit", "to", "molar_mass", "expected"),
    [
        (5.51, "mmol/L", "mg/dL", CHOLESTEROL, 213.04),  # substance -> mass concentration
        (213.0, "mg/dL", "mmol/L", CHOLESTEROL, 5.509),
        (2.13, "g/L", "mg/dL", None, 213.0),
        (16.0, "kPa", "mm[Hg]", None, 120.01),
        (4.2, "{ratio}", "1", None, 4.2),  # a UCUM annotation is unity
        (70.0, "[lb_av]", "kg", None, 31.75),
    ],
)
def test_values_in_other_units_are_converted(value, unit, to, molar_mass, expected) -> None:
    assert convert(value, unit, to, molar_mass) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(
    ("unit", "to", "molar_mass"),
    [
        ("mmol/L", "mg/dL", None),
        ("kg", "mg/dL", CHOLESTEROL),
        ("no such unit", "mg/dL", None),
        ("(" * 5000 + "g", "mg/dL", None),
    ],
)
def test_units_that_do_not_convert_are_refused(unit, to, molar_mass) -> None:
    with pytest.raises(UnitError):
        convert(1.0, unit, to, molar_mass)
