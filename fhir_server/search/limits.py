"""How much one search may ask for, so that no request can take the server's memory.

A search costs in proportion to what it asks: each `_sort` key is a sort over the matches,
each `_include` a search of its own, each OR value an index seek, and whatever the client
writes comes back in the Bundle's links. The parser refuses a search beyond these bounds
with a 400 whose OperationOutcome names the parameter and the bound (issue code
`too-long` for sizes, `too-costly` for counts), before anything runs. The defaults suit
any real client; a deployment changes them with `FHIR_MAX_QUERY_BYTES` and its siblings.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.errors import BadRequest, Issue
from fhir_server.parameters import MAX_INT64, whole_number

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_INT64",
    "SearchLimits",
    "check_size",
    "check_values",
    "too_much",
    "whole_number",
]


@dataclass(frozen=True, slots=True)
class SearchLimits:
    max_query_bytes: int = 64 * 1024  # every parameter of the search, names and values
    max_value_chars: int = 2048  # one value (one side of a comma)
    max_sort_keys: int = 16
    max_includes: int = 32  # _include and _revinclude together
    max_or_values: int = 1000  # comma-separated values of one parameter
    max_criteria: int = 100  # criteria (AND-ed parameters); each is a test of every match


DEFAULT_LIMITS = SearchLimits()


def too_much(name: str, message: str, *, code: str = "too-costly") -> BadRequest:
    """The 400 for a search beyond a limit, naming the parameter `name`."""
    return BadRequest(message, issues=[Issue(message, code, "error", (name,))])


def check_size(params: list[tuple[str, str]], limits: SearchLimits) -> None:
    """Refuse parameters that together exceed `max_query_bytes` (UTF-8, as in the URL)."""
    size = 0
    for name, value in params:
        size += len(name.encode()) + len(value.encode()) + 2  # "=" and "&"
        if size > limits.max_query_bytes:
            raise too_much(
                name,
                f"The search parameters exceed {limits.max_query_bytes} bytes "
                f"(at '{name[:64]}'): narrow the search or split it",
                code="too-long",
            )


def check_values(name: str, values: list[str], limits: SearchLimits) -> list[str]:
    """`values`, the OR values of parameter `name`, unless too many or one too long."""
    if len(values) > limits.max_or_values:
        raise too_much(
            name,
            f"'{name}' has {len(values)} values: at most "
            f"{limits.max_or_values} may be OR-ed in one parameter",
        )
    longest = max((len(v) for v in values), default=0)
    if longest > limits.max_value_chars:
        raise too_much(
            name,
            f"A value of '{name}' has {longest} characters: at most "
            f"{limits.max_value_chars} are accepted",
            code="too-long",
        )
    return values
