"""One module per search-parameter type, each behind the same small protocol.

A type module turns the FHIR values a parameter's expression selects into index values
(`extract`, at write time) and a search value into a condition (`parse`, at search time).
https://hl7.org/fhir/R4/search.html#ptypes -- a composite is indexed per element by the
extractor (its module only parses); special is Location `near`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from fhir_server.search.conditions import Condition
from fhir_server.search.registry import SearchParam
from fhir_server.search.types import (
    composite,
    date,
    number,
    quantity,
    reference,
    special,
    string,
    token,
    uri,
)
from fhir_server.search.types.common import ParseContext
from fhir_server.search.values import IndexValue


class SearchType(Protocol):
    MODIFIERS: frozenset[str]  # modifiers beyond :missing

    def extract(self, code: str, fhir_type: str | None, data: Any) -> Iterator[IndexValue]:
        """Index values of parameter `code` for one FHIR value (`fhir_type` None: unknown)."""
        ...

    def parse(
        self, param: SearchParam, modifier: str | None, value: str, ctx: ParseContext
    ) -> Condition:
        """The condition for one search value (one side of a comma); BadRequest if malformed."""
        ...


TYPES: Mapping[str, SearchType] = {
    "token": token,
    "string": string,
    "reference": reference,
    "date": date,
    "number": number,
    "quantity": quantity,
    "uri": uri,
    "composite": composite,
    "special": special,
}


def accepts(param: SearchParam, modifier: str, ctx: ParseContext) -> bool:
    """Whether `param` supports `modifier` (`:missing` aside)."""
    kind = TYPES.get(param.type)
    if kind is None:
        return False
    if param.type == "reference":
        return reference.accepts(param, modifier, ctx.registry)
    return modifier in kind.MODIFIERS


__all__ = ["TYPES", "ParseContext", "SearchType", "accepts"]
