"""Sorting and keyset paging on MongoDB: stored per-parameter sort values.

https://hl7.org/fhir/R4/search.html#sort -- a resource sorts by its lowest value of the
parameter ascending and its highest descending; one without a value sorts last. Each
resource document stores, at write time, `sk.<param>: {lo, hi}` -- the lowest and highest
sort value of each parameter it has (dates, numbers and quantities by their low bound,
strings normalized, tokens by code, references as Type/id else the URL). A sort on them
is an aggregation: `$addFields` a 0/1 "has no value" flag per key (MongoDB sorts a missing
field first), then `$sort` on (flag, value, ..., seq). This computes nothing per query
that MongoDB cannot do from the document, runs the same on mongomock and on a real
server, and needs no index (the sort happens on the matches; index `sk.<param>.lo` for
hot sort keys if needed). Sorts on `_id` and `_lastUpdated` only stay plain `find()`
sorts on indexed fields.

The page key of a resource is its sort values then `str(seq)`; a keyset condition is the
lexicographic "after" (or "before") on the (flag, value) components.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import PageKey, SearchQuery
from fhir_server.search.values import (
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)

Filter = dict[str, Any]
_KINDS = frozenset({"string", "token", "date", "number", "quantity", "reference", "uri"})
_NATIVE = {"_id": "id", "_lastUpdated": "last_updated"}


def _sort_value(value: IndexValue) -> Any:
    match value:
        case StringValue():
            return value.value
        case TokenValue():
            return value.code
        case DateValue() | NumberValue() | QuantityValue():
            return value.low
        case UriValue():
            return value.uri
        case ReferenceValue():
            if value.target_type and value.target_id:
                return f"{value.target_type}/{value.target_id}"
            return value.url
    return None


def sort_fields(index: Iterable[IndexValue]) -> dict[str, dict[str, Any]]:
    """`{param: {lo, hi}}`: each parameter's lowest and highest sort value."""
    out: dict[str, dict[str, Any]] = {}
    for value in index:
        found = _sort_value(value)
        param = getattr(value, "param", None)
        if found is None or not isinstance(param, str):
            continue
        seen = out.get(param)
        if seen is None:
            out[param] = {"lo": found, "hi": found}
        else:
            seen["lo"], seen["hi"] = min(seen["lo"], found), max(seen["hi"], found)
    return out


@dataclass(frozen=True, slots=True)
class _Component:
    field: str
    descending: bool
    key_index: int
    is_flag: bool = False

    def value(self, key: tuple[Any, ...]) -> Any:
        found = key[self.key_index]
        return int(found is None) if self.is_flag else found


@dataclass(frozen=True, slots=True)
class Ordering:
    """How one query sorts: computed fields (if any), the $sort and keyset conditions."""

    added: dict[str, Any]  # $addFields for the flags; empty: a plain find() sort
    components: tuple[_Component, ...]
    value_fields: tuple[str, ...]  # where each page key value is read, then "seq"

    def sort(self, reverse: bool = False) -> list[tuple[str, int]]:
        return [
            (c.field, DESCENDING if c.descending != reverse else ASCENDING) for c in self.components
        ]

    def keyset(self, page: PageKey) -> Filter:
        key = list(page.key)
        if len(key) != len(self.value_fields):
            raise BadRequest(
                "The paging key does not match this search's _sort", expression=("_page",)
            )
        try:
            key[-1] = ObjectId(str(key[-1]))
        except InvalidId:
            raise BadRequest("The paging key is not valid", expression=("_page",)) from None
        branches: list[Filter] = []
        equal: Filter = {}
        for c in self.components:
            value = c.value(tuple(key))
            if value is not None:
                op = "$gt" if c.descending == page.before else "$lt"
                branches.append({**equal, c.field: {op: value}})
            equal = {**equal, c.field: value}
        return {"$or": branches} if branches else {"_id": {"$in": []}}

    def page_key(self, doc: dict[str, Any]) -> tuple[Any, ...]:
        values = [_dig(doc, f) for f in self.value_fields[:-1]]
        return (*values, str(doc["seq"]))


def _dig(doc: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)  # type: ignore[assignment]
    return doc


def ordering(query: SearchQuery) -> Ordering:
    added: dict[str, Any] = {}
    components: list[_Component] = []
    fields: list[str] = []
    for i, key in enumerate(query.sort):
        native = _NATIVE.get(key.param)
        if native is not None:
            components.append(_Component(native, key.descending, i))
            fields.append(native)
            continue
        if key.kind not in _KINDS:
            raise BadRequest(f"Sorting by '{key.param}' is not supported", expression=("_sort",))
        field = f"sk.{key.param}.{'hi' if key.descending else 'lo'}"
        flag = f"_n{i}"
        added[flag] = {"$cond": [{"$eq": [{"$ifNull": [f"${field}", None]}, None]}, 1, 0]}
        components.append(_Component(flag, False, i, is_flag=True))
        components.append(_Component(field, key.descending, i))
        fields.append(field)
    components.append(_Component("seq", False, len(query.sort)))
    return Ordering(added, tuple(components), (*fields, "seq"))
