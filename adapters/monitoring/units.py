"""UCUM conversion of readings and thresholds (https://ucum.org/ucum), through ucumvert and pint.

A value already in the unit a vital sign is stored in costs nothing. Any other unit is parsed
as UCUM and converted; mass and substance concentrations (mg/dL and mmol/L of glucose)
convert through the molar mass. Temperatures convert with their offset (degF -> Cel). The
UCUM registry (shared, `fhir_server.model.ucum`) is built once, by `warm_in_background()` at
start (or on the first value that needs it); each unit is parsed once.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

import pint

from fhir_server.model import ucum

MAX_UNIT_CHARS = 64  # the units of vital signs are a few characters
_ANNOTATION = re.compile(r"\{[^{}]*\}")
_LONG_NUMBER = re.compile(r"\d{4,}")  # 10*999999999 would be a number of a billion digits


class UnitError(ValueError):
    """A unit that is not UCUM, or that does not convert to the one wanted."""


def _ucum() -> Any:
    return ucum.registry()


warm = ucum.warm
warm_in_background = ucum.warm_in_background


@lru_cache(maxsize=256)
def _parse(registry: Any, unit: str) -> Any:
    """A pint quantity of 1 `unit`; an annotation (`{beats}/min`) is unity, as UCUM says."""
    if len(unit) > MAX_UNIT_CHARS:
        raise UnitError(f"a unit of {len(unit)} characters is not a UCUM unit this server reads")
    bare = _ANNOTATION.sub("", unit).strip() or "1"
    if _LONG_NUMBER.search(bare):
        raise UnitError(
            f"'{unit}' has a number of more than 3 digits: not a unit this server reads"
        )
    bare = "1" + bare if bare.startswith("/") else bare
    try:
        parsed = registry.from_ucum(bare)
    except Exception as error:  # ucumvert raises lark's parse errors, pint's, overflows
        raise UnitError(f"'{unit}' is not a UCUM unit") from error
    if not hasattr(parsed, "to"):
        raise UnitError(f"'{unit}' is not a UCUM unit")
    return parsed


def convert(value: float, unit: str, to: str, molar_mass: float | None = None) -> float:
    """`value` `unit` expressed in `to`; `molar_mass` (g/mol) bridges mass and substance.
    UnitError also when the result is not a finite number."""
    if unit == to:
        return value
    try:
        converted = _convert(value, unit, to, molar_mass)
    except ArithmeticError as error:  # an overflow of a huge value or unit factor
        raise UnitError(f"{value} '{unit}' does not convert to a number in '{to}'") from error
    if not math.isfinite(converted):
        raise UnitError(f"{value} '{unit}' does not convert to a finite number in '{to}'")
    return converted


def _convert(value: float, unit: str, to: str, molar_mass: float | None) -> float:
    registry = _ucum()
    parsed, target = _parse(registry, unit), _parse(registry, to)
    # a Quantity of the unit itself, not value * (1 unit): offset units (degF) do not multiply
    source = registry.Quantity(value * parsed.magnitude, parsed.units)
    target_units = target.units
    try:
        return float(source.to(target_units).magnitude) / float(target.magnitude)
    except pint.DimensionalityError:
        if molar_mass is None:
            raise UnitError(f"'{unit}' does not convert to '{to}'") from None
    mass = registry.Quantity(molar_mass, "g/mol")
    for bridged in (source * mass, source / mass):
        try:
            return float(bridged.to(target_units).magnitude) / float(target.magnitude)
        except pint.DimensionalityError:
            continue
    raise UnitError(f"'{unit}' does not convert to '{to}', even through the molar mass")
