"""Date search parameters: date, dateTime, instant, Period and Timing as UTC ranges.

https://hl7.org/fhir/R4/search.html#date -- a value stands for the whole interval its
precision covers (1990-03 is all of March 1990), a Period for start..end (an open end runs
to the far past or future), a Timing for each of its events. Search values take the
prefixes eq ne gt lt ge le sa eb ap and are compared as ranges too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir_server.search.conditions import DateCondition
from fhir_server.search.dates import EARLIEST, LATEST, parse_instant_range
from fhir_server.search.registry import SearchParam
from fhir_server.search.types.common import ParseContext, bad_value, split_prefix
from fhir_server.search.values import DateValue

MODIFIERS: frozenset[str] = frozenset()
_PRIMITIVES = frozenset({"date", "dateTime", "instant", "System.DateTime", "System.Date"})


def extract(code: str, fhir_type: str | None, data: Any) -> Iterator[DateValue]:
    if isinstance(data, str):
        if fhir_type is None or fhir_type in _PRIMITIVES:
            found = parse_instant_range(data)
            if found:
                yield DateValue(code, *found)
    elif isinstance(data, dict):
        kind = fhir_type or ("Timing" if "event" in data or "repeat" in data else "Period")
        if kind == "Period":
            yield from _period(code, data)
        elif kind == "Timing":
            for event in data.get("event") or ():
                found = parse_instant_range(event) if isinstance(event, str) else None
                if found:
                    yield DateValue(code, *found)


def _period(code: str, data: dict[str, Any]) -> Iterator[DateValue]:
    start, end = data.get("start"), data.get("end")
    low = parse_instant_range(start) if isinstance(start, str) else None
    high = parse_instant_range(end) if isinstance(end, str) else None
    if low or high:
        yield DateValue(code, low[0] if low else EARLIEST, high[1] if high else LATEST)


def parse(param: SearchParam, modifier: str | None, value: str, ctx: ParseContext) -> DateCondition:
    prefix, text = split_prefix(value.strip())
    found = parse_instant_range(text)
    if found is None:
        raise bad_value(param.code, value, "date (yyyy-mm-ddThh:mm:ss[Z|(+|-)hh:mm])")
    return DateCondition(param.code, prefix, *found)
