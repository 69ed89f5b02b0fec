"""FHIR JSON in and out, keeping the precision of decimals.

https://hl7.org/fhir/R4/json.html -- decimals are JSON numbers whose precision is part of
the value ("1.50" is not "1.5"). orjson (fast) reads numbers as floats and would drop
trailing zeros and exponents, so a body whose numbers would not survive that is read by
the standard library with each decimal kept as a `Decimal`: a float that remembers its
text, written back verbatim by `dumps`. Everything else takes orjson's path.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# A JSON number (after `:`, `,` or `[`, before `,`, `}` or `]`) that is a fraction ending
# in 0, has an exponent, or has more digits than a float keeps. Text inside strings rarely
# looks like that (a time such as "10:00:00.500Z" is followed by Z); when it does, the slow
# path is taken for nothing, never the wrong one.
_LOSSY = re.compile(rb"[:,\[]\s*-?(?:\d+\.\d*0|\d+(?:\.\d+)?[eE][+-]?\d+|[\d.]{16,})\s*[,}\]]")
_INT64 = 2**63


class Decimal(float):
    """A FHIR decimal: compares and computes as a float, serializes as it was written."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> Decimal:
        value = super().__new__(cls, text)
        value.text = text
        return value

    def __repr__(self) -> str:
        return self.text


def loads(raw: bytes | str) -> Any:
    """Parse JSON; raises ValueError (orjson.JSONDecodeError is one) on malformed input."""
    data = raw.encode() if isinstance(raw, str) else raw
    if not _LOSSY.search(data):
        return orjson.loads(data)
    return json.loads(data, parse_float=Decimal, parse_int=_int, parse_constant=_constant)


def dumps(value: Any, option: int = 0) -> bytes:
    return orjson.dumps(value, default=_fragment, option=option)


def _fragment(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(value.text.encode())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _int(text: str) -> int:
    number = int(text)
    if not -_INT64 <= number < _INT64:
        raise ValueError(f"integer {text[:30]} is out of range")
    return number


def _constant(text: str) -> Any:
    raise ValueError(f"{text} is not valid JSON")
