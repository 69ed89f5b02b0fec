"""Checks of primitive values: JSON type, R4 format, integer range, calendar date.

https://hl7.org/fhir/R4/datatypes.html; the date/time patterns are fhir_core's own. Each
check returns a value's problem as text, or None.

The R4 regexes are XML Schema regexes, where `\\s` is only space, tab, CR and LF; Python's
`\\s` also matches U+00A0 and the other Unicode spaces, so they are spelled out here (a code
ending in a no-break space is a valid code). Every string-based value is also refused when
it holds a character XML cannot carry (controls other than tab, CR and LF, U+FFFE, U+FFFF,
unpaired surrogates): "Strings SHOULD not contain Unicode character points below 32, except
for u0009 (horizontal tab), u0010 (carriage return) and u0013 (line feed)", and such a value
could not be written as FHIR XML at all. Lengths are bounded by `limits.LIMITS`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from fhir_core import types as fhir_types

from fhir_server.model.validation.limits import LIMITS
from fhir_server.model.validation.narrative import narrative_problem

__all__ = ["ID_RE", "UUID_RE", "Check", "check_boolean", "check_for", "check_uuid", "found"]

Check = Callable[[Any], "str | None"]  # a value's problem, or None
ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
UUID_RE = re.compile(r"urn:uuid:[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_S = " \t\r\n"  # XML Schema's \s
_FORMATS = {  # R4 datatype regexes; the date/time ones as fhir_core defines them
    "code": re.compile(f"[^{_S}]+([{_S}][^{_S}]+)*"),
    "id": ID_RE,
    "oid": re.compile(fhir_types.Oid.pattern.pattern.strip("^$")),
    "uri": re.compile(f"[^{_S}]*"),
    "url": re.compile(f"[^{_S}]*"),
    "canonical": re.compile(f"[^{_S}]*"),
    "date": fhir_types.Date.pattern,
    "dateTime": fhir_types.DateTime.pattern,
    "instant": fhir_types.Instant.pattern,
    "time": fhir_types.Time.pattern,
}
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_UNBOUNDED = frozenset({"base64Binary", "xhtml"})  # see limits.py
_INT_RANGES = {
    "integer": (-(2**31), 2**31 - 1),
    "unsignedInt": (0, 2**31 - 1),
    "positiveInt": (1, 2**31 - 1),
}


def found(value: Any) -> str:
    """`value` as an error message names what was found instead."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    return "an array" if isinstance(value, list) else "an object"


def check_boolean(value: Any) -> str | None:
    return None if type(value) is bool else f"Expected a JSON boolean, found {found(value)}"


def _check_decimal(value: Any) -> str | None:
    # Decimal (our precision-keeping float) is a float subclass; bool is an int subclass.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value!r} is out of range for a decimal"
        return None
    return f"Expected a JSON number, found {found(value)}"


def _integer_check(code: str) -> Check:
    low, high = _INT_RANGES.get(code, (-(2**63), 2**63 - 1))

    def check(value: Any) -> str | None:
        if type(value) is not int:
            return f"Expected a JSON integer, found {found(value)}"
        if not low <= value <= high:
            return f"{value} is out of range for {code} ({low}..{high})"
        return None

    return check


@cache
def _string_check(code: str) -> Check:
    pattern = _FORMATS.get(code)
    calendar = code in ("date", "dateTime", "instant")
    bounded = code not in _UNBOUNDED

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return f"Expected a JSON string, found {found(value)}"
        if not value:
            return "Empty strings are not allowed; omit the element"
        if bounded and len(value) > LIMITS.max_string_chars:
            return (
                f"The value has {len(value)} characters; at most "
                f"{LIMITS.max_string_chars} are allowed"
            )
        bad = _NOT_XML.search(value)
        if bad is not None:
            return (
                f"The value holds the character U+{ord(bad.group()):04X} at position "
                f"{bad.start()}, which FHIR strings may not contain"
            )
        if pattern is not None and pattern.fullmatch(value) is None:
            rule = " (1 to 64 of A-Z a-z 0-9 - .)" if code == "id" else ""
            return f"{value[:70]!r} is not a valid {code}{rule}"
        if calendar and len(value) >= 10:
            try:
                datetime.date(int(value[:4]), int(value[5:7]), int(value[8:10]))
            except ValueError:
                return f"{value[:60]!r} is not a calendar date"
        return None

    return check


_NO_XML_SPACE = str.maketrans("", "", _S)


def _check_base64(value: Any) -> str | None:
    problem = _string_check("base64Binary")(value)
    if problem is None:
        try:
            base64.b64decode(value.translate(_NO_XML_SPACE), validate=True)
        except (binascii.Error, ValueError):
            return "Not valid base64"
    return problem


def check_uuid(value: Any) -> str | None:
    problem = _string_check("uuid")(value)
    if problem is None and UUID_RE.fullmatch(value) is None:
        return f"{value[:60]!r} is not a urn:uuid: UUID"
    return problem


def _check_xhtml(value: Any) -> str | None:
    return _string_check("xhtml")(value) or narrative_problem(value)


_SPECIAL = {"decimal": _check_decimal, "base64Binary": _check_base64, "xhtml": _check_xhtml}


def check_for(code: str) -> Check:
    """The check of a string, number or integer primitive type (`code`: "date", "decimal" ...).

    Booleans and uuids are told apart by their python type: `check_boolean`, `check_uuid`.
    """
    if code in ("integer", "unsignedInt", "positiveInt", "integer64"):
        return _integer_check(code)
    return _SPECIAL.get(code) or _string_check(code)
