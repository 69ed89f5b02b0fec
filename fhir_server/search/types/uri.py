"""URI search parameters: the whole URI, or with `:below` / `:above` a path prefix match.

https://hl7.org/fhir/R4/search.html#uri -- "The search parameter value is a uri ... The
match is an exact match"; `:below` finds URIs that start with the value, `:above` the
URIs the value starts with.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from fhir_server.search.conditions import UriCondition
from fhir_server.search.registry import SearchParam
from fhir_server.search.types.common import ParseContext, unescape
from fhir_server.search.values import UriValue

MODIFIERS = frozenset({"below", "above"})


def extract(code: str, fhir_type: str | None, data: Any) -> Iterator[UriValue]:
    if isinstance(data, str) and data:
        yield UriValue(code, data)


def parse(param: SearchParam, modifier: str | None, value: str, ctx: ParseContext) -> UriCondition:
    mode: Literal["eq", "below", "above"] = (
        "below" if modifier == "below" else ("above" if modifier == "above" else "eq")
    )
    return UriCondition(param.code, unescape(value), mode)
