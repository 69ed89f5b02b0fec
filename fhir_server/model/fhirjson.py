"""FHIR JSON in and out, keeping the precision of decimals.

https://hl7.org/fhir/R4/json.html -- decimals are JSON numbers whose precision is part of
the value ("1.50" is not "1.5"). orjson (fast) reads numbers as floats and would drop
trailing zeros and exponents, so a body whose numbers would not survive that is read by
the standard library with each decimal kept as a `Decimal`: a float that remembers its
text, written back verbatim by `dumps`. Everything else takes orjson's path.

A client's body is read with `loads_body`, which refuses what would break readers of the
stored JSON later: an object with the same key twice (RFC 8259 leaves the meaning to each
parser: we would keep one value and drop the other silently), and a number too large for
a double (`1e400`: strict parsers refuse it, so no page holding it could be read). Nesting
deeper than the standard library's parser follows is a ValueError, never a RecursionError.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import orjson

# A JSON number (after `:`, `,` or `[`, before `,`, `}` or `]`) that is a fraction ending
# in 0, has an exponent, or has more digits than a float keeps. Text inside strings rarely
# looks like that (a time such as "10:00:00.500Z" is followed by Z); when it does, the slow
# path is taken for nothing, never the wrong one.
_LOSSY = re.compile(rb"[:,\[]\s*-?(?:\d+\.\d*0|\d+(?:\.\d+)?[eE][+-]?\d+|[\d.]{16,})\s*[,}\]]")
_INT64 = 2**63
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")  # a \uD800-\uDFFF escape, maybe unpaired


class Decimal(float):
    """A FHIR decimal: compares and computes as a float, serializes as it was written.

    Only finite numbers: a text such as `1e400` that a double cannot hold is a ValueError.
    """

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> Decimal:
        value = super().__new__(cls, text)
        if not math.isfinite(value):
            raise ValueError(f"number {text[:30]} is out of range")
        value.text = text
        return value

    def __repr__(self) -> str:
        return self.text


def loads(raw: bytes | str) -> Any:
    """Parse JSON; raises ValueError (orjson.JSONDecodeError is one) on malformed input."""
    data = raw.encode() if isinstance(raw, str) else raw
    if not _LOSSY.search(data):
        return orjson.loads(data)
    return _python_loads(data, None)


def loads_body(raw: bytes) -> Any:
    """Parse a client's JSON body: as `loads`, and a ValueError for a duplicate key too.

    orjson keeps the last of duplicate keys silently, so bodies go through the standard
    library's parser with a hook that sees every key (about 50 µs more for a Patient).
    That parser also takes a lone UTF-16 surrogate (`"\\ud800"`), which no UTF-8 text can
    hold: such a body is refused as well.
    """
    value = _python_loads(raw, _unique_keys)
    if _SURROGATE.search(raw):
        try:
            dumps(value)
        except TypeError:  # orjson.JSONEncodeError: "surrogates not allowed"
            raise ValueError("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)") from None
    return value


def _python_loads(data: bytes, pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None) -> Any:
    parse_float = Decimal if _LOSSY.search(data) else _finite_float
    try:
        return json.loads(
            data,
            parse_float=parse_float,
            parse_int=_int,
            parse_constant=_constant,
            object_pairs_hook=pairs_hook,
        )
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key '{key[:60]}' appears twice in one object")
            seen.add(key)
    return out


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:30]} is out of range")
    return value


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
