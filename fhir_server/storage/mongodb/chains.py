"""Chains, `_has` and `near` on MongoDB: resolved by inner queries before the search.

A filter document cannot hold a sub-query, so these conditions are evaluated first and
replaced by plain filters (`query.Resolved`): a chain (`subject:Patient.name=x`) by the
references to the matching resources, `_has:Observation:subject:code=x` by the keys of
the resources the matching Observations' `subject` references target, `near` by the keys
of the resources within the distance (the bounding box is an index range on `geo`, the
exact great-circle test is done here: neither `$geoNear` on our index arrays nor
trigonometry in `$expr` is available on every deployment the tests cover). Inner queries
are resolved the same way first, so chains nest to any depth.

An inner query that matches more than `MAX_MATCHES` resources, or a `_has` whose matches
reference more than that many, is refused with a 400 asking for a narrower search,
instead of shipping an unbounded list to the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import (
    AllOf,
    AnyOf,
    ChainCondition,
    Condition,
    HasCondition,
    NearCondition,
    Not,
    SearchQuery,
)
from fhir_server.search.types.special import bounding_box, distance_km
from fhir_server.storage.mongodb.documents import Filter, resource_key
from fhir_server.storage.mongodb.query import Resolved, _any_of, search_filter

MAX_MATCHES = 10_000
Find = Callable[[Filter, dict[str, int], int], Awaitable[list[dict[str, Any]]]]
_RESOLVED = (ChainCondition, HasCondition, NearCondition)


def _needs(c: Condition) -> bool:
    match c:
        case AllOf() | AnyOf():
            return any(_needs(p) for p in c.conditions)
        case Not():
            return _needs(c.condition)
    return isinstance(c, _RESOLVED)


def needs_resolving(query: SearchQuery) -> bool:
    return any(_needs(c) for clause in query.clauses for c in clause)


async def resolve(query: SearchQuery, types: Sequence[str], find: Find) -> SearchQuery:
    """`query` with its chains, `_has` and `near` conditions turned into plain filters."""
    if not needs_resolving(query):
        return query
    clauses = []
    for clause in query.clauses:
        clauses.append(tuple([await _resolve(c, types, find) for c in clause]))
    return replace(query, clauses=tuple(clauses))


async def _matches(
    query: SearchQuery, find: Find, projection: dict[str, int], what: str
) -> list[dict[str, Any]]:
    inner = await resolve(query, query.types, find)
    docs = await find(search_filter(inner, inner.types), projection, MAX_MATCHES + 1)
    if len(docs) > MAX_MATCHES:
        raise BadRequest(
            f"The {what} matches more than {MAX_MATCHES:,} resources of "
            f"{', '.join(query.types)}; narrow it down"
        )
    return docs


async def _resolve(c: Condition, types: Sequence[str], find: Find) -> Any:
    match c:
        case AllOf() | AnyOf():
            return replace(
                c, conditions=tuple([await _resolve(p, types, find) for p in c.conditions])
            )
        case Not():
            return Not(await _resolve(c.condition, types, find))
        case ChainCondition():
            docs = await _matches(c.query, find, {"type": 1, "id": 1}, f"chain on '{c.param}'")
            by_type: dict[str, list[str]] = {}
            for doc in docs:
                by_type.setdefault(doc["type"], []).append(doc["id"])
            return Resolved(
                _any_of(
                    [
                        {"ref": {"$elemMatch": {"p": c.param, "t": t, "i": {"$in": ids}}}}
                        for t, ids in sorted(by_type.items())
                    ]
                )
            )
        case HasCondition():
            docs = await _matches(c.query, find, {"ref": 1}, f"_has on '{c.param}'")
            keys = sorted(
                {
                    resource_key(r["t"], r["i"])
                    for doc in docs
                    for r in doc.get("ref", ())
                    if r.get("p") == c.param and r.get("t") and r.get("i")
                }
            )
            if len(keys) > MAX_MATCHES:
                raise BadRequest(
                    f"The _has on '{c.param}' leads to more than {MAX_MATCHES:,} resources; "
                    "narrow it down",
                    expression=(f"_has:{':'.join(c.query.types)}:{c.param}",),
                )
            return Resolved({"_id": {"$in": keys}})
        case NearCondition():
            return Resolved({"_id": {"$in": await _near(c, types, find)}})
    return c


async def _near(c: NearCondition, types: Sequence[str], find: Find) -> list[str]:
    low, high, longitudes = bounding_box(c)
    box = _any_of(
        [
            {
                "geo": {
                    "$elemMatch": {
                        "p": c.param,
                        "lat": {"$gte": low, "$lte": high},
                        "lon": {"$gte": west, "$lte": east},
                    }
                }
            }
            for west, east in longitudes
        ]
    )
    filter: Filter = {"deleted": False, "$and": [box]}
    if types:
        filter["type"] = {"$in": list(types)}
    docs = await find(filter, {"_id": 1, "geo": 1}, MAX_MATCHES + 1)
    if len(docs) > MAX_MATCHES:
        raise BadRequest(
            f"'near' finds more than {MAX_MATCHES:,} positions in its area; use a smaller distance"
        )
    return [
        doc["_id"]
        for doc in docs
        if any(
            g.get("p") == c.param
            and distance_km(g["lat"], g["lon"], c.latitude, c.longitude) <= c.distance_km
            for g in doc.get("geo", ())
        )
    ]
