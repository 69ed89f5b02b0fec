"""String search parameters: case- and accent-insensitive "starts with", `:exact`, `:contains`.

https://hl7.org/fhir/R4/search.html#string -- a HumanName matches on family, given,
prefix, suffix and text; an Address on line, city, district, state, postalCode, country
and text. Each part is its own index value (normalized, and as written for :exact); a
name also contributes its parts joined ("Peter James Chalmers") so a full name matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fhir_server.search.conditions import StringCondition
from fhir_server.search.normalize import normalize
from fhir_server.search.registry import SearchParam
from fhir_server.search.types.common import ParseContext, unescape
from fhir_server.search.values import StringValue

MODIFIERS = frozenset({"exact", "contains"})
_NAME_PARTS = ("prefix", "given", "family", "suffix")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def extract(code: str, fhir_type: str | None, data: Any) -> Iterator[StringValue]:
    if isinstance(data, str):
        yield from _values(code, (data,))
    elif isinstance(data, dict):
        kind = fhir_type or _guess(data)
        if kind == "HumanName":
            yield from _values(code, _name_parts(data))
        elif kind == "Address":
            yield from _values(code, _parts(data, _ADDRESS_PARTS))


def _values(code: str, texts: Iterable[str]) -> Iterator[StringValue]:
    for text in texts:
        if text:
            yield StringValue(code, normalize(text), text)


def _parts(data: dict[str, Any], names: tuple[str, ...]) -> Iterator[str]:
    for name in names:
        value = data.get(name)
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, str))


def _name_parts(data: dict[str, Any]) -> list[str]:
    parts = list(_parts(data, _NAME_PARTS))
    text = data.get("text")
    texts = [*parts, text] if isinstance(text, str) else parts
    if len(parts) > 1:
        texts.append(" ".join(parts))
    return texts


def _guess(data: dict[str, Any]) -> str | None:
    if "family" in data or "given" in data:
        return "HumanName"
    if "line" in data or "city" in data or "postalCode" in data or "country" in data:
        return "Address"
    return None


def parse(
    param: SearchParam, modifier: str | None, value: str, ctx: ParseContext
) -> StringCondition:
    text = unescape(value)
    if modifier == "exact":
        return StringCondition(param.code, text, "exact")
    return StringCondition(param.code, normalize(text), "contains" if modifier else "start")
