"""Search conditions to SQL: each condition as the rows that match it.

A condition reads either as rids from an index range (`selects`), to start a search from,
or as a test of the row `r` being considered (`exists`); `planner` chooses which.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import (
    Condition,
    DateCondition,
    IdCondition,
    LastUpdatedCondition,
    MissingCondition,
    NumberCondition,
    Prefix,
    QuantityCondition,
    ReferenceCondition,
    StringCondition,
    TokenCondition,
    TokenSetCondition,
    UriCondition,
    prefix_successor,
)
from fhir_server.search.normalize import normalize
from fhir_server.storage.sqlite.schema import TABLE_OF_KIND
from fhir_server.storage.sqlite.sql import Fragment, and_, marks, or_


@dataclass(frozen=True, slots=True)
class _Rids:
    """Rows of one index table for one parameter, matching any of `alternatives`."""

    table: str
    param: str
    alternatives: tuple[Fragment, ...] = (("", []),)  # "": every value of the parameter
    negate: bool = False

    def selects(self, types: Sequence[str]) -> list[Fragment]:
        """SELECTs of the matching rids, each an index range on (type, param, value...)."""
        head = f"SELECT rid FROM {self.table} WHERE type IN ({marks(len(types))}) AND param = ?"
        return [(f"{head} AND {sql}" if sql else head, [*types, self.param, *params])
                for sql, params in self.alternatives]

    def exists(self) -> Fragment:
        """Whether row r has a matching value: a seek on the table's (rid, seq) key. The
        type is left out on purpose, so that SQLite cannot prefer a (type, ...) index."""
        any_value = any(not sql for sql, _ in self.alternatives)
        match = ("", []) if any_value else or_(list(self.alternatives))
        sql, params = and_(("rid = r.rid AND param = ?", [self.param]), match)
        exists = f"EXISTS (SELECT 1 FROM {self.table} WHERE {sql})"
        return (f"NOT {exists}" if self.negate else exists, params)


def _range(prefix: Prefix, low: Any, high: Any) -> tuple[Fragment, ...]:
    """`range_matches` on the columns low/high, as alternatives that each use an index."""
    contained: Fragment = ("low >= ? AND high <= ?", [low, high])
    above: Fragment = ("high > ?", [high])
    below: Fragment = ("low < ?", [low])
    rules: dict[str, tuple[Fragment, ...]] = {
        "eq": (contained,),
        "ne": (below, above),
        "gt": (above,),
        "lt": (below,),
        "ge": (above, contained),
        "le": (below, contained),
        "sa": (("low > ?", [high]),),
        "eb": (("high < ?", [low]),),
        "ap": (("low <= ? AND high >= ?", [high, low]),),
    }
    return rules[prefix]


def _point(c: LastUpdatedCondition, col: str) -> Fragment:
    """`range_matches` for `col`, a point t = [t, t], simplified."""
    low, high = c.low, c.high
    rules: dict[str, Fragment] = {
        "eq": (f"{col} >= ? AND {col} <= ?", [low, high]),
        "ap": (f"{col} >= ? AND {col} <= ?", [low, high]),
        "ne": (f"({col} < ? OR {col} > ?)", [low, high]),
        "gt": (f"{col} > ?", [high]),
        "sa": (f"{col} > ?", [high]),
        "lt": (f"{col} < ?", [low]),
        "eb": (f"{col} < ?", [low]),
        "ge": (f"{col} >= ?", [low]),  # t > high or low <= t <= high
        "le": (f"{col} <= ?", [high]),  # t < low or low <= t <= high
    }
    return rules[c.prefix]


def _starts_with(column: str, prefix: str) -> Fragment:
    """`column` starts with `prefix`, as an index range (UTF-8 sorts by code point)."""
    upper = prefix_successor(prefix)
    if upper is None:
        return ("", [])
    return (f"{column} >= ? AND {column} < ?", [prefix, upper])


def _eq(column: str, value: Any) -> Fragment:
    """`column = value`, or no constraint when value is None."""
    return (f"{column} = ?", [value]) if value is not None else ("", [])


def _token(c: TokenCondition) -> _Rids:
    system: Fragment = ("", [])
    if c.system == "":
        system = ("system IS NULL", [])
    elif c.system is not None:
        system = ("system = ?", [c.system])
    return _Rids("token_idx", c.param, (and_(_eq("code", c.code), system),), negate=c.negate)


def _token_set(c: TokenSetCondition) -> _Rids:
    """One index seek per system: `code IN` a JSON array bound as one parameter, so a
    value set of any size stays one statement."""
    alternatives = tuple(
        ("code IN (SELECT value FROM json_each(?)) AND system = ?",
         [json.dumps(codes), system])
        for system, codes in c.by_system().items()
    )
    return _Rids("token_idx", c.param, alternatives or (("0", []),), negate=c.negate)


def _string(c: StringCondition) -> _Rids:
    if c.mode == "exact":  # indexed values are StringValue(value=normalize(exact), exact)
        match: Fragment = ("value = ? AND exact = ?", [normalize(c.value), c.value])
    elif c.mode == "contains":
        match = ("instr(value, ?) > 0", [c.value]) if c.value else ("", [])
    else:
        match = _starts_with("value", c.value)
    return _Rids("string_idx", c.param, (match,))


def _reference(c: ReferenceCondition) -> _Rids:
    version = _eq("version", c.version)
    alternatives = []
    if c.target_id is not None or c.url is None:
        alternatives.append(and_(_eq("target_id", c.target_id),
                                  _eq("target_type", c.target_type), version))
    if c.url is not None:
        alternatives.append(and_(_eq("url", c.url), version))
    return _Rids("reference_idx", c.param, tuple(alternatives))


def _quantity(c: QuantityCondition) -> _Rids:
    unit = and_(_eq("code", c.code), _eq("system", c.system))
    ranges = _range(c.prefix, c.low, c.high)
    return _Rids("quantity_idx", c.param, tuple(and_(unit, r) for r in ranges))


def _uri(c: UriCondition) -> _Rids:
    if c.mode == "below":
        match = _starts_with("uri", c.uri)
    elif c.mode == "above":  # the indexed uri is a prefix of c.uri: look each prefix up
        prefixes = [c.uri[:n] for n in range(1, len(c.uri) + 1)]
        match = (f"uri IN ({marks(len(prefixes))})", prefixes)
    else:
        match = ("uri = ?", [c.uri])
    return _Rids("uri_idx", c.param, (match,))


@dataclass(frozen=True, slots=True)
class _IdRids:
    """`_id` as a rid subquery on UNIQUE(type, id), like an index condition: the planner
    would otherwise walk the type's rows in rid order to spare itself a sort."""

    ids: tuple[str, ...]
    negate = False

    def selects(self, types: Sequence[str]) -> list[Fragment]:
        sql = (f"SELECT rid FROM resources WHERE type IN ({marks(len(types))}) "
               f"AND id IN ({marks(len(self.ids))})")
        return [(sql, [*types, *self.ids])]

    def exists(self) -> Fragment:
        return (f"r.id IN ({marks(len(self.ids))})", list(self.ids))


@dataclass(frozen=True, slots=True)
class _UpdatedRids:
    """`_lastUpdated` on the (type, last_updated) index, like an index condition. As a
    test of row r it is written `+r.last_updated` (no index) unless the results are
    sorted by _lastUpdated: then the range delivers them in order."""

    condition: LastUpdatedCondition
    ordered: bool
    negate = False

    def selects(self, types: Sequence[str]) -> list[Fragment]:
        sql, params = _point(self.condition, "last_updated")
        return [(f"SELECT rid FROM resources WHERE type IN ({marks(len(types))}) AND {sql}",
                 [*types, *params])]

    def exists(self) -> Fragment:
        return _point(self.condition, "r.last_updated" if self.ordered else "+r.last_updated")


Matches = _Rids | _IdRids | _UpdatedRids


def condition_matches(c: Condition, by_updated: bool) -> Matches:
    """A condition as the rows that match it: rids from an index, or a test of row r."""
    match c:
        case TokenCondition():
            return _token(c)
        case TokenSetCondition():
            return _token_set(c)
        case StringCondition():
            return _string(c)
        case ReferenceCondition():
            return _reference(c)
        case DateCondition():
            return _Rids("date_idx", c.param, _range(c.prefix, c.low, c.high))
        case NumberCondition():
            return _Rids("number_idx", c.param, _range(c.prefix, c.low, c.high))
        case QuantityCondition():
            return _quantity(c)
        case UriCondition():
            return _uri(c)
        case MissingCondition():
            return _Rids(TABLE_OF_KIND[c.param_type], c.param, negate=c.missing)
        case IdCondition():
            return _IdRids(c.ids)
        case LastUpdatedCondition():
            return _UpdatedRids(c, by_updated)
    raise BadRequest(f"Search condition {type(c).__name__} is not supported by this engine")
