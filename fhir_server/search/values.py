"""Index values: what a resource contributes to search, extracted once at write time.

One dataclass per search-parameter type. Engines keep one index table (SQLite) or one
index field (MongoDB) per type. Dates, numbers and quantities are stored as ranges
[low, high] because FHIR compares ranges (a birthDate of 1990-03 is the whole month).
Dates are UTC instants formatted `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so they sort as strings.
"""

from __future__ import annotations

from dataclasses import dataclass


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


IndexValue = (
    TokenValue | StringValue | ReferenceValue | DateValue | NumberValue | QuantityValue | UriValue
)
