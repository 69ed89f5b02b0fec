"""URI search parameters: the whole URI, or with `:below` / `:above` a path prefix match.

https://hl7.org/fhir/R4/search.html#uri -- "The search parameter value is a uri ... The
match is an exact match"; `:below` finds URIs that start with the value, `:above` the
URIs the value starts with. An `:above` value is looked up as its every prefix, so it is
limited to `MAX_ABOVE_CHARS` (a 400 naming the parameter beyond): the lookup stays a few
hundred kilobytes on either engine instead of growing with the square of the length.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from fhir_server.search.conditions import UriCondition
from fhir_server.search.limits import too_much
from fhir_server.search.registry import SearchParam
from fhir_server.search.types.common import ParseContext, unescape
from fhir_server.search.values import UriValue

MODIFIERS = frozenset({"below", "above"})
MAX_ABOVE_CHARS = 1024  # 1,024 prefixes of up to 1,024 characters: at most 0.5 MB


def extract(code: str, fhir_type: str | None, data: Any) -> Iterator[UriValue]:
    if isinstance(data, str) and data:
        yield UriValue(code, data)


def parse(param: SearchParam, modifier: str | None, value: str, ctx: ParseContext) -> UriCondition:
    mode: Literal["eq", "below", "above"] = (
        "below" if modifier == "below" else ("above" if modifier == "above" else "eq")
    )
    uri = unescape(value)
    if mode == "above" and len(uri) > MAX_ABOVE_CHARS:
        name = f"{param.code}:above"
        raise too_much(
            name,
            f"A '{name}' value has {len(uri)} characters: at most {MAX_ABOVE_CHARS} are "
            "accepted (every prefix of it is looked up)",
            code="too-long",
        )
    return UriCondition(param.code, uri, mode)
