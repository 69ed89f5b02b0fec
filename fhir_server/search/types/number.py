"""Number search parameters: exact values in resources, search values per prefix.

https://hl7.org/fhir/R4/search.html#number -- a value in a resource indexes as the point
[v, v]; a Range (RiskAssessment's probability) stands for low..high. A search value is
exact with gt, lt, ge, le, sa and eb, and stands for its implicit precision with eq and ne
("100" is [99.5, 100.5)); see `common.search_range`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from fhir_server.search.conditions import NumberCondition
from fhir_server.search.registry import SearchParam
from fhir_server.search.types.common import (
    ParseContext,
    bad_value,
    number_value,
    search_range,
    split_prefix,
)
from fhir_server.search.values import NumberValue

MODIFIERS: frozenset[str] = frozenset()


def extract(code: str, fhir_type: str | None, data: Any) -> Iterator[NumberValue]:
    if isinstance(data, dict):
        if "low" in data or "high" in data:
            found = range_bounds(data)
        else:
            found = _point(number_value(data.get("value")))
    else:
        found = _point(number_value(data))
    if found:
        yield NumberValue(code, *found)


def _point(value: float | None) -> tuple[float, float] | None:
    return None if value is None else (value, value)


def range_bounds(data: dict[str, Any]) -> tuple[float, float] | None:
    """[low, high] of a FHIR Range (its bounds inclusive and exact; open ends infinite)."""
    low, high = _bound(data.get("low")), _bound(data.get("high"))
    if low is None and high is None:
        return None
    return (-math.inf if low is None else low), (math.inf if high is None else high)


def _bound(quantity: object) -> float | None:
    if isinstance(quantity, dict):
        value = quantity.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def parse(
    param: SearchParam, modifier: str | None, value: str, ctx: ParseContext
) -> NumberCondition:
    prefix, text = split_prefix(value.strip())
    found = search_range(prefix, text)
    if found is None:
        raise bad_value(param.code, value, "number")
    return NumberCondition(param.code, prefix, *found)
