"""UCUM unit conversion (https://ucum.org/ucum) for model inputs, through ucumvert and pint.

A value in the unit the manifest names is used as it is and costs nothing. Any other unit is
parsed as UCUM and converted; a mass concentration and a substance concentration (mg/dL and
mmol/L) convert through the input's molar mass. The UCUM registry takes seconds to build, so
it is built once, by `warm_in_background()` at start (or on the first value that needs it);
each unit is parsed once.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import pint

from fhir_server.model import ucum


class UnitError(ValueError):
    """A unit that is not UCUM, or that does not convert to the one the model expects."""


def _ucum() -> Any:
    return ucum.registry()


warm = ucum.warm
warm_in_background = ucum.warm_in_background


MAX_UNIT_CHARS = 64  # UCUM units in lab results are a few characters
_ANNOTATION = re.compile(r"\{[^{}]*\}")


@lru_cache(maxsize=256)
def _parse(registry: Any, unit: str) -> Any:
    """A pint quantity of 1 `unit`; an annotation (`{ratio}`) is unity, as UCUM says."""
    if len(unit) > MAX_UNIT_CHARS:
        raise UnitError(f"a unit of {len(unit)} characters is not one this server converts")
    bare = _ANNOTATION.sub("", unit).strip() or "1"
    bare = "1" + bare if bare.startswith("/") else bare
    try:
        parsed = registry.from_ucum(bare)
    except Exception as error:  # ucumvert raises lark's parse errors and pint's alike
        raise UnitError(f"{unit!r} is not a UCUM unit") from error
    if not hasattr(parsed, "to"):
        raise UnitError(f"{unit!r} is not a UCUM unit")
    return parsed


def convert(value: float, unit: str, to: str, molar_mass: float | None = None) -> float:
    """`value` `unit` expressed in `to`; `molar_mass` (g/mol) bridges mass and substance."""
    if unit == to:
        return value
    registry = _ucum()
    source = value * _parse(registry, unit)
    target = _parse(registry, to)
    try:
        return float(source.to(target).magnitude)
    except pint.DimensionalityError:
        if molar_mass is None:
            raise UnitError(f"{unit!r} does not convert to {to!r}") from None
    mass = molar_mass * _parse(registry, "g/mol")
    for bridged in (source * mass, source / mass):
        try:
            return float(bridged.to(target).magnitude)
        except pint.DimensionalityError:
            continue
    raise UnitError(f"{unit!r} does not convert to {to!r}, even through the molar mass")
