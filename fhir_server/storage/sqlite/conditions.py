"""Search conditions to SQL: each condition as the rows that match it.

A condition reads either as rids from an index range (`selects`), to start a search from,
or as a test of the row `r` being considered (`exists`); `planner` chooses which.

An OR of many values (`code=a,b,...`, a thousand references) is one read however many
values it has: the conditions of a clause on one parameter merge (`clause_matches`), and
from `LISTED` values of one shape on, the values are bound as one JSON array that
`json_each` walks, each of its rows an index seek (`_listed`): no UNION of a SELECT per
value (SQLite allows 500) and no statement that grows with the values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import (
    AllOf,
    AnyOf,
    ChainCondition,
    Clause,
    CompositeCondition,
    Condition,
    DateCondition,
    HasCondition,
    IdCondition,
    LastUpdatedCondition,
    MissingCondition,
    NearCondition,
    Not,
    NumberCondition,
    Prefix,
    QuantityCondition,
    ReferenceCondition,
    StringCondition,
    TokenCondition,
    TokenSetCondition,
    TokenTextCondition,
    UriCondition,
    prefix_successor,
)
from fhir_server.search.normalize import normalize
from fhir_server.search.types.special import bounding_box
from fhir_server.storage.sqlite.chains import ChainRids, HasRids
from fhir_server.storage.sqlite.schema import TABLE_OF_KIND
from fhir_server.storage.sqlite.sql import Fragment, and_, marks, or_, union_all

LISTED = 16  # from this many values of one shape on, they are bound as one JSON array


def _shapes(alternatives: Sequence[Fragment]) -> list[tuple[str, list[list[Any]]]]:
    """The alternatives grouped by their SQL, in order, each with its rows of parameters."""
    groups: dict[str, dict[tuple[Any, ...], None]] = {}
    for sql, params in alternatives:
        groups.setdefault(sql, {})[tuple(params)] = None  # the same twice is once
    return [(sql, [list(row) for row in rows]) for sql, rows in groups.items()]


def _listable(sql: str, rows: list[list[Any]]) -> bool:
    """Whether these rows go as one JSON array: enough of them, JSON has their values."""
    return (
        bool(sql)
        and len(rows) >= LISTED
        and all(
            isinstance(v, str | int) or (isinstance(v, float) and math.isfinite(v))
            for row in rows
            for v in row
        )
    )


def _listed(sql: str, rows: list[list[Any]]) -> tuple[str, str, str]:
    """(values, test, array): `values` is a table `v` of one row per parameter row (columns
    v0, v1, ...) read from the JSON `array`, `test` is `sql` on those columns. The columns
    have names no index table has, so `sql`'s own column names keep their meaning."""
    width = len(rows[0])
    columns = ", ".join(f"value ->> {i} AS v{i}" for i in range(width))
    pieces = sql.split("?")
    test = "".join(piece + (f"v.v{i}" if i < width else "") for i, piece in enumerate(pieces))
    array = json.dumps(rows, ensure_ascii=False)
    return f"(SELECT {columns} FROM json_each(?)) AS v", test, array


@dataclass(frozen=True, slots=True)
class _Rids:
    """Rows of one index table for one parameter, matching any of `alternatives`."""

    table: str
    param: str
    alternatives: tuple[Fragment, ...] = (("", []),)  # "": every value of the parameter
    negate: bool = False

    def selects(self, types: Sequence[str]) -> list[Fragment]:
        """SELECTs of the matching rids, each an index range on (type, param, value...):
        one per alternative, or per listed shape one that seeks each value of the list."""
        kinds = marks(len(types))
        head = f"SELECT rid FROM {self.table} WHERE type IN ({kinds}) AND param = ?"
        out: list[Fragment] = []
        for sql, rows in _shapes(self.alternatives):
            if _listable(sql, rows):
                values, test, array = _listed(sql, rows)
                out.append(
                    (
                        f"SELECT t.rid FROM {values} CROSS JOIN {self.table} AS t "
                        f"WHERE t.type IN ({kinds}) AND t.param = ? AND {test}",
                        [array, *types, self.param],
                    )
                )
            else:
                out.extend(
                    (f"{head} AND {sql}" if sql else head, [*types, self.param, *row])
                    for row in rows
                )
        return out

    def exists(self) -> Fragment:
        """Whether row r has a matching value: a seek on the table's (rid, seq) key. The
        type is left out on purpose, so that SQLite cannot prefer a (type, ...) index."""
        any_value = any(not sql for sql, _ in self.alternatives)
        match = ("", []) if any_value else or_(self.tests())
        sql, params = and_(("rid = r.rid AND param = ?", [self.param]), match)
        exists = f"EXISTS (SELECT 1 FROM {self.table} WHERE {sql})"
        return (f"NOT {exists}" if self.negate else exists, params)

    def tests(self) -> list[Fragment]:
        """The alternatives as tests of one index row (a listed shape: one test)."""
        out: list[Fragment] = []
        for sql, rows in _shapes(self.alternatives):
            if _listable(sql, rows):
                values, test, array = _listed(sql, rows)
                out.append((f"EXISTS (SELECT 1 FROM {values} WHERE {test})", [array]))
            else:
                out.extend((sql, row) for row in rows)
        return out


def _range(
    prefix: Prefix, low: Any, high: Any, lo: str = "low", hi: str = "high"
) -> tuple[Fragment, ...]:
    """`range_matches` on the columns lo/hi, as alternatives that each use an index."""
    # `lo <= high` follows from the other two (lo <= hi) and bounds the index range.
    contained: Fragment = (f"{lo} >= ? AND {lo} <= ? AND {hi} <= ?", [low, high, high])
    above: Fragment = (f"{hi} > ?", [high])
    below: Fragment = (f"{lo} < ?", [low])
    rules: dict[str, tuple[Fragment, ...]] = {
        "eq": (contained,),
        "ne": (below, above),
        "gt": (above,),
        "lt": (below,),
        "ge": (above, contained),
        "le": (below, contained),
        "sa": ((f"{lo} > ?", [high]),),
        "eb": ((f"{hi} < ?", [low]),),
        "ap": ((f"{lo} <= ? AND {hi} >= ?", [high, low]),),
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
        ("code IN (SELECT value FROM json_each(?)) AND system = ?", [json.dumps(codes), system])
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
        alternatives.append(
            and_(_eq("target_id", c.target_id), _eq("target_type", c.target_type), version)
        )
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
        match = ("uri IN (SELECT value FROM json_each(?))", [json.dumps(prefixes)])
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
        listed, params = self.listed()
        sql = f"SELECT rid FROM resources WHERE type IN ({marks(len(types))}) AND id IN {listed}"
        return [(sql, [*types, *params])]

    def exists(self) -> Fragment:
        listed, params = self.listed()
        return (f"r.id IN {listed}", params)

    def listed(self) -> Fragment:
        """The ids as an IN list, or from LISTED on as one JSON array (one parameter)."""
        if len(self.ids) < LISTED:
            return (f"({marks(len(self.ids))})", list(self.ids))
        return ("(SELECT value FROM json_each(?))", [json.dumps(self.ids, ensure_ascii=False)])


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
        return [
            (
                f"SELECT rid FROM resources WHERE type IN ({marks(len(types))}) AND {sql}",
                [*types, *params],
            )
        ]

    def exists(self) -> Fragment:
        return _point(self.condition, "r.last_updated" if self.ordered else "+r.last_updated")


def _token_text(c: TokenTextCondition) -> _Rids:
    return _Rids("token_idx", c.param, (_starts_with("text", c.text),))


def _component(c: Condition, i: int) -> tuple[Fragment, ...]:
    """One component's condition on the composite_idx columns of component `i`."""
    s, code, lo, hi, x = (f"{name}{i}" for name in ("s", "c", "lo", "hi", "x"))
    match c:
        case TokenCondition(negate=False):
            system: Fragment = ("", [])
            if c.system == "":
                system = (f"{s} IS NULL", [])
            elif c.system is not None:
                system = (f"{s} = ?", [c.system])
            return (and_(_eq(code, c.code), system),)
        case QuantityCondition():
            unit = and_(_eq(code, c.code), _eq(s, c.system))
            return tuple(and_(unit, r) for r in _range(c.prefix, c.low, c.high, lo, hi))
        case DateCondition() | NumberCondition():
            return _range(c.prefix, c.low, c.high, lo, hi)
        case StringCondition(mode="exact"):
            return ((f"{x} = ? AND {code} = ?", [normalize(c.value), c.value]),)
        case StringCondition(mode="start"):
            return (_starts_with(x, c.value),)
        case ReferenceCondition(url=None):
            return (and_(_eq(code, c.target_id), _eq(s, c.target_type)),)
        case ReferenceCondition():
            return ((f"{x} = ?", [c.url]),)
        case UriCondition(mode="eq"):
            return ((f"{x} = ?", [c.uri]),)
    raise BadRequest(
        f"A {type(c).__name__} cannot be a component of a composite search",
        expression=(getattr(c, "param", "composite"),),
    )


def _composite(c: CompositeCondition) -> _Rids:
    """Every component matches in the same row, that is within the same element."""
    alternatives: list[Fragment] = [("", [])]
    for i, component in enumerate(c.components):
        alternatives = [and_(a, b) for a in alternatives for b in _component(component, i)]
    return _Rids("composite_idx", c.param, tuple(alternatives))


def _near(c: NearCondition) -> _Rids:
    """The bounding box as index ranges, then the exact distance of each position."""
    low, high, longitudes = bounding_box(c)
    exact: Fragment = ("distance_km(lat, lon, ?, ?) <= ?", [c.latitude, c.longitude, c.distance_km])
    return _Rids(
        "geo_idx",
        c.param,
        tuple(
            and_(
                ("lat >= ? AND lat <= ? AND lon >= ? AND lon <= ?", [low, high, west, east]), exact
            )
            for west, east in longitudes
        ),
    )


@dataclass(frozen=True, slots=True)
class _AnyRids:
    """`_filter` or: rids of any part (drivable when every part is)."""

    parts: tuple[Any, ...]

    @property
    def negate(self) -> bool:
        return any(p.negate for p in self.parts)

    def selects(self, types: Sequence[str]) -> list[Fragment]:
        return [s for p in self.parts for s in p.selects(types)]

    def exists(self) -> Fragment:
        return or_([p.exists() for p in self.parts])


@dataclass(frozen=True, slots=True)
class _AllRids:
    """`_filter` and: the rids of the first drivable part that pass the others."""

    parts: tuple[Any, ...]

    @property
    def negate(self) -> bool:
        return all(p.negate for p in self.parts)

    def selects(self, types: Sequence[str]) -> list[Fragment]:
        first = next(p for p in self.parts if not p.negate)
        drive, drive_params = union_all(first.selects(types))
        rest = and_(*(p.exists() for p in self.parts if p is not first))
        sql, params = and_((f"r.rid IN ({drive})", drive_params), rest)
        return [(f"SELECT r.rid FROM resources r WHERE {sql}", params)]

    def exists(self) -> Fragment:
        return and_(*(p.exists() for p in self.parts))


@dataclass(frozen=True, slots=True)
class _NotRids:
    """`_filter` not: the rows the part does not match (never drives a search)."""

    part: Any
    negate = True

    def selects(self, types: Sequence[str]) -> list[Fragment]:
        raise AssertionError("a negation never drives a search")

    def exists(self) -> Fragment:
        sql, params = self.part.exists()
        return (f"NOT ({sql})", params)


Matches = _Rids | _IdRids | _UpdatedRids | ChainRids | HasRids | _AnyRids | _AllRids | _NotRids


def index_only(m: Matches) -> bool:
    """Whether `m` is decided by index rows alone, which exist only for live resources."""
    return isinstance(m, _Rids) and not m.negate


def clause_matches(clause: Clause, by_updated: bool) -> list[Matches]:
    """The conditions of an OR-clause as matches, those on one parameter's index values
    (and the `_id`s) merged into one, so that an OR of any number of values is one read."""
    return merged([condition_matches(c, by_updated) for c in clause])


def merged(matches: list[Matches]) -> list[Matches]:
    """`matches` with every plain index condition on one (table, param) made one, and
    the `_id` conditions one (a negated one stays apart: not-a OR not-b is no not-(a OR b))."""
    groups: dict[object, list[Matches]] = {}
    for at, m in enumerate(matches):
        if isinstance(m, _Rids) and not m.negate:
            key: object = (m.table, m.param)
        else:
            key = "_id" if isinstance(m, _IdRids) else at
        groups.setdefault(key, []).append(m)
    return [_merge(group) for group in groups.values()]


def _merge(group: list[Matches]) -> Matches:
    first = group[0]
    if len(group) == 1:
        return first
    if isinstance(first, _IdRids):
        ids = (i for m in group if isinstance(m, _IdRids) for i in m.ids)
        return _IdRids(tuple(dict.fromkeys(ids)))
    assert isinstance(first, _Rids)
    return _Rids(
        first.table,
        first.param,
        tuple(a for m in group if isinstance(m, _Rids) for a in m.alternatives),
    )


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
        case TokenTextCondition():
            return _token_text(c)
        case CompositeCondition():
            return _composite(c)
        case NearCondition():
            return _near(c)
        case AllOf():
            return _AllRids(tuple(condition_matches(p, by_updated) for p in c.conditions))
        case AnyOf():
            return _AnyRids(tuple(clause_matches(c.conditions, by_updated)))
        case Not():
            return _NotRids(condition_matches(c.condition, by_updated))
        case ChainCondition():
            return ChainRids(c.param, c.query, clause_matches)
        case HasCondition():
            return HasRids(c.param, c.query, clause_matches)
        case IdCondition():
            return _IdRids(c.ids)
        case LastUpdatedCondition():
            return _UpdatedRids(c, by_updated)
    raise BadRequest(f"Search condition {type(c).__name__} is not supported by this engine")
