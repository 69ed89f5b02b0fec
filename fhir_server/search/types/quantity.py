"""Quantity search parameters: a number at its precision, with system and code (or unit).

https://hl7.org/fhir/R4/search.html#quantity -- search values are
`[prefix][number]|[system]|[code]`, `[number]||[code]` (code or unit, any system) or a
number alone, the number read as for number parameters (exact with gt, lt, ge, le, sa,
eb; at its precision with eq, ne, ap: see `common.search_range`). Indexed from Quantity
(and Age, Duration, Distance, Count, Money) as its exact value, whose comparator (`<`,
`>=`, ...) opens the range on one side, and from Range (low..high).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from fhir_server.search.conditions import QuantityCondition
from fhir_server.search.registry import SearchParam
from fhir_server.search.types.common import (
    ParseContext,
    bad_value,
    number_value,
    search_range,
    split_escaped,
    split_prefix,
    unescape,
)
from fhir_server.search.types.number import range_bounds
from fhir_server.search.values import QuantityValue

MODIFIERS: frozenset[str] = frozenset()
CURRENCY_SYSTEM = "urn:iso:std:iso:4217"


def extract(code: str, fhir_type: str | None, data: Any) -> Iterator[QuantityValue]:
    if not isinstance(data, dict) or fhir_type == "SampledData":
        return
    if fhir_type == "Range" or (fhir_type is None and ("low" in data or "high" in data)):
        yield from _range(code, data)
    elif fhir_type == "Money" or (fhir_type is None and "currency" in data):
        value = number_value(data.get("value"))
        if value is not None:
            yield QuantityValue(code, value, value, CURRENCY_SYSTEM, data.get("currency"))
    else:
        value = number_value(data.get("value"))
        if value is not None:
            low, high = _compared(data.get("comparator"), value)
            yield QuantityValue(
                code, low, high, data.get("system"), data.get("code"), data.get("unit")
            )


def _compared(comparator: object, value: float) -> tuple[float, float]:
    if comparator in ("<", "<="):
        return -math.inf, value
    if comparator in (">", ">="):
        return value, math.inf
    return value, value


def _range(code: str, data: dict[str, Any]) -> Iterator[QuantityValue]:
    found = range_bounds(data)
    if found is None:
        return
    unit = next((q for q in (data.get("low"), data.get("high")) if isinstance(q, dict)), {})
    yield QuantityValue(code, *found, unit.get("system"), unit.get("code"), unit.get("unit"))


def parse(
    param: SearchParam, modifier: str | None, value: str, ctx: ParseContext
) -> QuantityCondition:
    prefix, text = split_prefix(value.strip())
    parts = split_escaped(text, "|")
    if len(parts) not in (1, 3):
        raise bad_value(param.code, value, "quantity ([prefix]number|system|code)")
    found = search_range(prefix, parts[0])
    if found is None:
        raise bad_value(param.code, value, "quantity ([prefix]number|system|code)")
    system, code = (
        (unescape(parts[1]) or None, unescape(parts[2]) or None)
        if len(parts) == 3
        else (None, None)
    )
    return QuantityCondition(param.code, prefix, *found, system, code)
