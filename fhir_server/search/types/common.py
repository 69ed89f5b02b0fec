"""Pieces the search-parameter types share: escaping, prefixes, implicit numeric precision.

https://hl7.org/fhir/R4/search.html#escaping -- "\\," "\\$" "\\|" and "\\\\" stand for the
literal characters in parameter values; https://hl7.org/fhir/R4/search.html#prefix for the
comparison prefixes of number, date and quantity values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Protocol, cast, get_args

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import Prefix
from fhir_server.search.registry import SearchRegistry

PREFIXES: frozenset[str] = frozenset(get_args(Prefix))


class CodeLookup(Protocol):
    """The terminology service as token search sees it (raises FhirError when it cannot answer)."""

    def codes_in(self, value_set_url: str) -> frozenset[tuple[str, str]]:
        """(system, code) of every concept in the value set's expansion."""
        ...

    def codes_below(self, system: str, code: str) -> frozenset[str]:
        """`code` and everything it subsumes."""
        ...

    def codes_above(self, system: str, code: str) -> frozenset[str]:
        """`code` and everything that subsumes it."""
        ...


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What parsing a value may need beyond the parameter: the registry, the server's base,
    the terminology service (for token :in, :not-in, :above, :below)."""

    registry: SearchRegistry
    base: str | None = None  # absolute references under this base are read as local
    codes: CodeLookup | None = None


def split_escaped(value: str, separator: str) -> list[str]:
    """Split on `separator` where it is not escaped by a backslash; escapes are kept."""
    if "\\" not in value:
        return value.split(separator)
    parts, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def unescape(value: str) -> str:
    if "\\" not in value:
        return value
    out, escaped = [], False
    for char in value:
        if escaped or char != "\\":
            out.append(char)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def split_prefix(value: str) -> tuple[Prefix, str]:
    """The comparison prefix of a number, date or quantity value (eq when there is none)."""
    if len(value) > 2 and value[:2] in PREFIXES:
        return cast(Prefix, value[:2]), value[2:]
    return "eq", value


EXACT_PREFIXES: frozenset[str] = frozenset({"gt", "lt", "ge", "le", "sa", "eb"})
_EXPONENT_BOUND = 400  # beyond double's (-324 to 308), as a decimal exponent
APPROXIMATELY = Decimal("0.1")  # `ap`: within 10% of the value (the spec's recommendation)


def parse_decimal(text: str) -> Decimal | None:
    """`text` as a decimal that a float can hold, None when it is not one (`1e999999999`
    is a decimal, but beyond any value an index holds)."""
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not number.is_finite() or not math.isfinite(float(number)):
        return None
    return number


def search_range(prefix: Prefix, text: str) -> tuple[float, float] | None:
    """[low, high] a number search value stands for under `prefix`; None if not a number.

    https://hl7.org/fhir/R4/search.html#number -- with gt, lt, ge, le, sa and eb the value
    is exact ("gt100: greater than exactly 100"): low = high = the value. With eq and ne it
    stands for its implicit precision, half a unit of its last digit: "100" is
    [99.5, 100.5) and "100.00" [99.995, 100.005); in exponent form the exponent sets the
    last digit, so "1e2" (1 significant figure) is [50, 150). The upper end is exclusive,
    so `high` is the float just below it. `ap` widens that range to 10% of the value.
    """
    number = parse_decimal(text)
    if number is None:
        return None
    if prefix in EXACT_PREFIXES:
        return float(number), float(number)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    # Beyond a double's exponents (`1e-999999999`, `0e999999999`) half a unit is below the
    # smallest float or above the largest either way: clamped, the floats are the same, and
    # the arithmetic stays within the decimal context's range (`scaleb` raised there).
    last = min(max(exponent, -_EXPONENT_BOUND), _EXPONENT_BOUND)
    half = Decimal((0, (5,), last - 1))
    if prefix == "ap":
        half = max(half, abs(number) * APPROXIMATELY)
        return float(number - half), float(number + half)
    return float(number - half), math.nextafter(float(number + half), -math.inf)


def number_value(value: object) -> float | None:
    """A JSON number from a resource as the exact value it indexes as (None: not a number).

    Values in resources are compared exactly; only the search value has a precision."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None
    number = parse_decimal(str(value))
    return None if number is None else float(number)


def bad_value(code: str, value: str, expected: str) -> BadRequest:
    return BadRequest(
        f"Search parameter '{code}': '{value}' is not a valid {expected}", expression=(code,)
    )
