"""Regular expressions that clients write, run on RE2: linear time, never catastrophic.

Python's `re` backtracks: `(\\w+)+!` against thirty letters takes hours, and a request
doing that holds the event loop and so every other request. Every regular expression that
comes from a request (a ValueSet `regex` filter, FHIRPath `matches()` and `replaceMatches()`
in a FHIRPath Patch or a custom SearchParameter) is compiled here instead, on RE2, whose
matching time is linear in the input. The price is RE2's syntax
(https://github.com/google/re2/wiki/Syntax): no backreferences and no lookaround (a
pattern using them is a 400 naming it), and `\\w`, `\\d`, `\\b` are ASCII (`\\pL` is any
letter).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from fhir_server.errors import BadRequest

_MAX_MEMORY = 8 << 20  # bytes of RE2 program per pattern: a huge `a{1000}{1000}` is a 400


def _options(*, dot_matches_newline: bool = False) -> Any:
    options = re2.Options()
    options.log_errors = False  # a client's bad pattern is a 400, not a line on stderr
    options.max_mem = _MAX_MEMORY
    options.dot_nl = dot_matches_newline
    return options


@lru_cache(maxsize=512)
def compile_regex(pattern: str, what: str, *, dot_matches_newline: bool = False) -> Any:
    """`pattern` compiled on RE2; a BadRequest naming `what` when RE2 cannot compile it."""
    try:
        return re2.compile(pattern, _options(dot_matches_newline=dot_matches_newline))
    except re2.error as error:
        reason = error.args[0] if error.args else error
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise BadRequest(
            f"{what} '{pattern}' is not a supported regular expression ({reason}); "
            "patterns run on RE2: no backreferences or lookaround"
        ) from None


def _string(values: list[Any], function: str) -> str | None:
    strings = [v for v in values if isinstance(v, str)]
    if len(strings) != len(values) or len(strings) > 1:
        raise BadRequest(f"FHIRPath {function}() needs a single string input")
    return strings[0] if strings else None


def _matches(values: list[Any], pattern: str) -> Any:
    """FHIRPath `matches(regex)`: true when the regex matches part of the input string."""
    text = _string(values, "matches")
    if text is None or not pattern:
        return []
    compiled = compile_regex(pattern, "FHIRPath matches() regex", dot_matches_newline=True)
    return compiled.search(text) is not None


def _replace_matches(values: list[Any], pattern: str, substitution: str) -> Any:
    """FHIRPath `replaceMatches(regex, substitution)`; `$1` names a group, as in the spec."""
    text = _string(values, "replaceMatches")
    if text is None or not isinstance(pattern, str) or not isinstance(substitution, str):
        return []
    compiled = compile_regex(pattern, "FHIRPath replaceMatches() regex")
    groups = re2.compile(r"\$(\d+)")
    return compiled.sub(groups.sub(r"\\\1", substitution.replace("\\", "\\\\")), text)


FHIRPATH_FUNCTIONS: dict[str, dict[str, Any]] = {
    "matches": {"fn": _matches, "arity": {1: ["String"]}, "nullable_input": True},
    "replaceMatches": {
        "fn": _replace_matches,
        "arity": {2: ["String", "String"]},
        "nullable_input": True,
    },
}
"""fhirpathpy's `userInvocationTable` entries that replace its `re`-based functions: pass
`{"userInvocationTable": FHIRPATH_FUNCTIONS}` in the options of every `fhirpathpy.compile`
of an expression a client wrote."""
