"""Index values: what a resource contributes to search, extracted once at write time.

One dataclass per search-parameter type. Engines keep one index table (SQLite) or one
index field (MongoDB) per type. Dates, numbers and quantities are stored as ranges
[low, high] because FHIR compares ranges (a birthDate of 1990-03 is the whole month).
Dates are UTC instants formatted `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so they sort as strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TokenValue:
    param: str
    system: str | None  # None: the value had no system
    code: str | None
    text: str | None = None  # display / text, for :text (normalized like strings)


@dataclass(frozen=True, slots=True)
class StringValue:
    param: str
    value: str  # normalized: accents stripped, case folded (see search.normalize)
    exact: str  # as written, for :exact


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    param: str
    target_type: str | None  # for local references Type/id
    target_id: str | None
    url: str | None = None  # absolute URL or canonical (without version)
    version: str | None = None  # _history version or canonical |version


@dataclass(frozen=True, slots=True)
class DateValue:
    param: str
    low: str
    high: str


@dataclass(frozen=True, slots=True)
class NumberValue:
    param: str
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class QuantityValue:
    param: str
    low: float
    high: float
    system: str | None
    code: str | None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    param: str
    uri: str


@dataclass(frozen=True, slots=True)
class GeoValue:
    """A position (Location.position) for `near`, in decimal degrees (WGS84)."""

    param: str
    latitude: float
    longitude: float


ComponentValue = (
    TokenValue | StringValue | ReferenceValue | DateValue | NumberValue | QuantityValue | UriValue
)


@dataclass(frozen=True, slots=True)
class CompositeValue:
    """One combination of a composite parameter's component values, all taken from the same
    element (one Observation.component): `parts[i]` is a value of the i-th component."""

    param: str
    parts: tuple[ComponentValue, ...]


IndexValue = ComponentValue | GeoValue | CompositeValue


def component_fields(value: ComponentValue) -> tuple[Any, Any, Any, Any, Any]:
    """A composite's component value in one flat shape for both engines: (system, code,
    low, high, text). Tokens: system, code, text; quantities: system, code, range, unit;
    dates and numbers: the range; strings: code is the exact text, text the normalized
    one; references: system is the target type, code the target id, text the URL; uris:
    the text."""
    match value:
        case TokenValue():
            return (value.system, value.code, None, None, value.text)
        case QuantityValue():
            return (value.system, value.code, value.low, value.high, value.unit)
        case DateValue() | NumberValue():
            return (None, None, value.low, value.high, None)
        case StringValue():
            return (None, value.exact, None, None, value.value)
        case ReferenceValue():
            return (value.target_type, value.target_id, None, None, value.url)
        case UriValue():
            return (None, None, None, None, value.uri)
    raise TypeError(f"Not a component value: {value!r}")


COMPONENT_FIELDS = ("s", "c", "lo", "hi", "x")
