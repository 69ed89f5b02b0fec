"""Search: a `SearchQuery`'s clauses and conditions as a MongoDB filter, and its sort."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import (
    AllOf,
    AnyOf,
    Clause,
    CompositeCondition,
    Condition,
    DateCondition,
    IdCondition,
    LastUpdatedCondition,
    MissingCondition,
    Not,
    NumberCondition,
    Prefix,
    QuantityCondition,
    ReferenceCondition,
    SearchQuery,
    StringCondition,
    TokenCondition,
    TokenSetCondition,
    TokenTextCondition,
    UriCondition,
    prefix_successor,
)
from fhir_server.search.normalize import normalize
from fhir_server.storage.mongodb.documents import FIELD_OF_KIND, Filter, present, resource_key

Alternative = list[tuple[str, str, Any]]  # (lo | hi, operator, value), all must hold


def _range(prefix: Prefix, low: Any, high: Any) -> list[Alternative]:
    """`range_matches` on an indexed range [lo, hi], as alternatives that each use an index."""
    # lo <= high follows from the other two (lo <= hi) and bounds the index range.
    contained: Alternative = [("lo", "$gte", low), ("lo", "$lte", high), ("hi", "$lte", high)]
    above: Alternative = [("hi", "$gt", high)]
    below: Alternative = [("lo", "$lt", low)]
    rules: dict[str, list[Alternative]] = {
        "eq": [contained],
        "ne": [below, above],
        "gt": [above],
        "lt": [below],
        "ge": [above, contained],
        "le": [below, contained],
        "sa": [[("lo", "$gt", high)]],
        "eb": [[("hi", "$lt", low)]],
        "ap": [[("lo", "$lte", high), ("hi", "$gte", low)]],
    }
    return rules[prefix]


def _bounds(alternative: Alternative, lo: str, hi: str) -> Filter:
    """One alternative on the fields named `lo` and `hi` (the same field for a point)."""
    out: Filter = {}
    for end, op, value in alternative:
        out.setdefault(lo if end == "lo" else hi, {})[op] = value
    return out


def _any_of(filters: list[Filter]) -> Filter:
    if not filters:
        return {"_id": {"$in": []}}  # an empty OR matches nothing
    return filters[0] if len(filters) == 1 else {"$or": filters}


def _elem(field: str, param: str, *alternatives: Filter) -> Filter:
    """Some element of `field` is for `param` and matches one of `alternatives`."""
    return _any_of([{field: {"$elemMatch": {"p": param, **alt}}} for alt in alternatives or ({},)])


def _starts_with(field: str, prefix: str) -> Filter:
    """`field` starts with `prefix`, as an index range: strings compare by UTF-8 bytes,
    which is code point order, so no regex (and no escaping) is needed."""
    upper = prefix_successor(prefix)
    if upper is None:
        return {}
    return {field: {"$gte": prefix, "$lt": upper}}


def _token(c: TokenCondition) -> Filter:
    match = present(c=c.code)
    if c.system is not None:
        match["s"] = c.system or None  # "": the value has no system
    if c.negate:
        return {"tok": {"$not": {"$elemMatch": {"p": c.param, **match}}}}
    return _elem("tok", c.param, match)


def _token_set(c: TokenSetCondition) -> Filter:
    if not c.codes:
        return {} if c.negate else {"_id": {"$in": []}}
    found = _elem(
        "tok",
        c.param,
        *({"s": system, "c": {"$in": codes}} for system, codes in c.by_system().items()),
    )
    return {"$nor": [found]} if c.negate else found


MAX_REGEX_BYTES = 32_764  # the server refuses a longer $regex pattern (BadValue)


def _string(c: StringCondition) -> Filter:
    if c.mode == "exact":
        return _elem("str", c.param, {"x": c.value})
    if c.mode == "contains":
        # A substring cannot use index bounds; the regex scans the (type, p, v) keys.
        if not c.value:
            return _elem("str", c.param, {})
        pattern = _escape(c.value)
        if len(pattern.encode()) > MAX_REGEX_BYTES:
            raise BadRequest(
                f"The ':contains' value of '{c.param}' is too long to search for",
                expression=(f"{c.param}:contains",),
            )
        return _elem("str", c.param, {"v": {"$regex": pattern}})
    return _elem("str", c.param, _starts_with("v", c.value))


def _escape(text: str) -> str:
    """`text` as a literal in a PCRE pattern: every ASCII non-alphanumeric escaped, control
    characters (NUL included: the server refuses a pattern holding one) as `\\xhh`."""
    return "".join(
        ch
        if ch.isalnum() or ch == "_" or ord(ch) > 127
        else (f"\\x{ord(ch):02x}" if ord(ch) < 32 or ord(ch) == 127 else "\\" + ch)
        for ch in text
    )


def _reference(c: ReferenceCondition) -> Filter:
    version = present(v=c.version)
    alternatives = []
    if c.target_id is not None or c.url is None:
        alternatives.append(present(i=c.target_id, t=c.target_type) | version)
    if c.url is not None:
        alternatives.append({"u": c.url} | version)
    return _elem("ref", c.param, *alternatives)


def _ranged(field: str, c: DateCondition | NumberCondition | QuantityCondition) -> Filter:
    unit = present(c=c.code, s=c.system) if isinstance(c, QuantityCondition) else {}
    alternatives = [unit | _bounds(a, "lo", "hi") for a in _range(c.prefix, c.low, c.high)]
    return _elem(field, c.param, *alternatives)


def _uri(c: UriCondition) -> Filter:
    if c.mode == "below":
        return _elem("uri", c.param, _starts_with("u", c.uri))
    if c.mode == "above":  # the indexed uri is a prefix of c.uri: look each prefix up
        return _elem("uri", c.param, {"u": {"$in": [c.uri[:n] for n in range(1, len(c.uri) + 1)]}})
    return _elem("uri", c.param, {"u": c.uri})


def _missing(c: MissingCondition) -> Filter:
    field = FIELD_OF_KIND[c.param_type]
    if c.missing:
        return {field: {"$not": {"$elemMatch": {"p": c.param}}}}
    return _elem(field, c.param)


def _last_updated(c: LastUpdatedCondition) -> Filter:
    """`range_matches` with the point [t, t], t = last_updated."""
    return _any_of(
        [_bounds(a, "last_updated", "last_updated") for a in _range(c.prefix, c.low, c.high)]
    )


def _ids(c: IdCondition, types: Sequence[str]) -> Filter:
    """`_id` as exact `_id` keys when the types are known, else on the id field."""
    if types:
        return {"_id": {"$in": [resource_key(t, i) for t in types for i in c.ids]}}
    return {"id": {"$in": list(c.ids)}}


def _token_text(c: TokenTextCondition) -> Filter:
    return _elem("tok", c.param, _starts_with("t", c.text))


def _component(c: Condition, i: int) -> list[Filter]:
    """One component's condition on the flattened fields of component `i` (see documents)."""
    s, code, lo, hi, x = (f"{name}{i}" for name in ("s", "c", "lo", "hi", "x"))
    match c:
        case TokenCondition(negate=False):
            match = present(**{code: c.code})
            if c.system is not None:
                match[s] = c.system or None
            return [match]
        case QuantityCondition():
            unit = present(**{code: c.code, s: c.system})
            return [unit | _bounds(a, lo, hi) for a in _range(c.prefix, c.low, c.high)]
        case DateCondition() | NumberCondition():
            return [_bounds(a, lo, hi) for a in _range(c.prefix, c.low, c.high)]
        case StringCondition(mode="exact"):
            return [{x: normalize(c.value), code: c.value}]
        case StringCondition(mode="start"):
            return [_starts_with(x, c.value)]
        case ReferenceCondition(url=None):
            return [present(**{code: c.target_id, s: c.target_type})]
        case ReferenceCondition():
            return [{x: c.url}]
        case UriCondition(mode="eq"):
            return [{x: c.uri}]
    raise BadRequest(
        f"A {type(c).__name__} cannot be a component of a composite search",
        expression=(getattr(c, "param", "composite"),),
    )


def _composite(c: CompositeCondition) -> Filter:
    """Every component matches in the same array element, that is within one element."""
    alternatives: list[Filter] = [{}]
    for i, component in enumerate(c.components):
        alternatives = [a | b for a in alternatives for b in _component(component, i)]
    return _elem("cmp", c.param, *alternatives)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A condition already turned into a filter (chains, _has and near, see `chains.py`)."""

    filter: Filter


def _condition(c: Condition | Resolved, types: Sequence[str]) -> Filter:
    match c:
        case Resolved():
            return c.filter
        case AllOf():
            return {"$and": [_condition(p, types) for p in c.conditions]}
        case AnyOf():
            return _any_of([_condition(p, types) for p in c.conditions])
        case Not():
            return {"$nor": [_condition(c.condition, types)]}
        case TokenTextCondition():
            return _token_text(c)
        case CompositeCondition():
            return _composite(c)
        case TokenCondition():
            return _token(c)
        case TokenSetCondition():
            return _token_set(c)
        case StringCondition():
            return _string(c)
        case ReferenceCondition():
            return _reference(c)
        case DateCondition():
            return _ranged("dt", c)
        case NumberCondition():
            return _ranged("num", c)
        case QuantityCondition():
            return _ranged("qty", c)
        case UriCondition():
            return _uri(c)
        case MissingCondition():
            return _missing(c)
        case IdCondition():
            return _ids(c, types)
        case LastUpdatedCondition():
            return _last_updated(c)
    raise BadRequest(f"Search condition {type(c).__name__} is not supported by this engine")


def _clause(clause: Clause, types: Sequence[str]) -> Filter:
    """OR of the clause's conditions."""
    return _any_of([_condition(c, types) for c in clause])


def _order_clauses(filters: list[Filter]) -> list[Filter]:
    """The clause filters in evaluation order.

    The query planner chooses the index itself (it races candidate plans); this is the
    place to put the most selective indexed clause first, e.g. from parameter statistics,
    or to turn it into an index hint. Until then, the order of the query.
    """
    return filters


def search_filter(query: SearchQuery, types: Sequence[str]) -> Filter:
    """The filter for the query's live resources of `types` (empty: no type constraint)."""
    out: Filter = {"deleted": False}
    if types:
        out["type"] = types[0] if len(types) == 1 else {"$in": list(types)}
    clauses = _order_clauses([_clause(clause, types) for clause in query.clauses])
    if clauses:
        out["$and"] = clauses
    return out


_SORT_FIELDS = {"_id": "id", "_lastUpdated": "last_updated"}


def search_sort(query: SearchQuery) -> list[tuple[str, int]]:
    keys = []
    for key in query.sort:
        field = _SORT_FIELDS.get(key.param)
        if field is None:
            raise BadRequest(f"Sorting by '{key.param}' is not supported", expression=("_sort",))
        keys.append((field, DESCENDING if key.descending else ASCENDING))
    return [*keys, ("seq", ASCENDING)]
