"""The SQLite storage engine: the embedded default, standard-library sqlite3 in WAL mode.

Schema (PRAGMA user_version = 1):

    resources  rid INTEGER PRIMARY KEY, type, id, version, last_updated, deleted, method,
               data; UNIQUE(type, id). The current version of every resource; a deletion
               keeps its row as a tombstone. `rid` is the surrogate key of all other
               tables and the insertion order that breaks sort ties.
    versions   vid INTEGER PRIMARY KEY, rid, version, type, last_updated, deleted, method,
               data; UNIQUE(rid, version). Every version, for vread and history.
    <kind>_idx rid, seq, type, param, <value columns>, for kind in token, string,
               reference, date, number, quantity, uri. The current index values, clustered
               by (rid, seq) (WITHOUT ROWID) so replacing a resource's values is one range
               delete, with secondary indexes that lead with (type, param, value...) and
               end with rid, so every condition is an index range that yields rids.

Search is one query on `resources r`. A clause reads either as `r.rid IN (SELECT rid FROM
<kind>_idx WHERE type IN .. AND param = ? AND <value range>)`, where SQLite starts from the
index range and fetches the rows by rid, or as `EXISTS (SELECT 1 FROM <kind>_idx WHERE rid =
r.rid ...)`, a test of a row by the clustered key; `_plan` chooses per query (see there).
Later search features plug into the same shapes: a chain is a rid subquery over
`reference_idx` joined to the target's, `_has` the reverse, sorting on a parameter a
correlated `min(value)` over the resource's clustered index rows.

Concurrency: calls run synchronously on the event-loop thread (each is short). Reads
outside a transaction use their own connection and see only committed data (WAL). A write
transaction holds an `asyncio.Lock` across its awaits and `BEGIN IMMEDIATE` on the write
connection, so write transactions are serialized within the process and across processes
that share the file; waiting for another process's lock is an asyncio.sleep loop, never a
block of the event loop. WAL checkpoints (fsyncs) run on a worker thread between write
transactions (`_Checkpoints`), not inside a COMMIT on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_server.errors import BadRequest, VersionConflict
from fhir_server.search.conditions import (
    Clause,
    Condition,
    DateCondition,
    IdCondition,
    LastUpdatedCondition,
    MissingCondition,
    NumberCondition,
    Prefix,
    QuantityCondition,
    ReferenceCondition,
    SearchQuery,
    StringCondition,
    TokenCondition,
    UriCondition,
)
from fhir_server.search.normalize import normalize
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
from fhir_server.storage.base import HistoryQuery, Page, StoredResource

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ITER_BATCH = 500

Fragment = tuple[str, list[Any]]  # SQL text and its parameters, in order


def _marks(n: int) -> str:
    return ", ".join("?" * n)


# -- schema ---------------------------------------------------------------------------

_INDEX_COLUMNS = (
    "rid INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL"
)
_INDEX_KEY = "PRIMARY KEY (rid, seq)) WITHOUT ROWID"

SCHEMA = (
    """CREATE TABLE resources (
        rid INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL,
        version INTEGER NOT NULL, last_updated TEXT NOT NULL, deleted INTEGER NOT NULL,
        method TEXT NOT NULL, data BLOB NOT NULL, UNIQUE (type, id))""",
    # (type, deleted) entries end with rid: a type's live resources in insertion order.
    "CREATE INDEX resources_type ON resources (type, deleted)",
    "CREATE INDEX resources_updated ON resources (type, last_updated)",
    """CREATE TABLE versions (
        vid INTEGER PRIMARY KEY, rid INTEGER NOT NULL, version INTEGER NOT NULL,
        type TEXT NOT NULL, last_updated TEXT NOT NULL, deleted INTEGER NOT NULL,
        method TEXT NOT NULL, data BLOB NOT NULL)""",
    "CREATE UNIQUE INDEX versions_rid ON versions (rid, version)",
    "CREATE INDEX versions_updated ON versions (last_updated, version)",
    "CREATE INDEX versions_type_updated ON versions (type, last_updated, version)",
    f"CREATE TABLE token_idx ({_INDEX_COLUMNS}, system TEXT, code TEXT, text TEXT, {_INDEX_KEY}",
    "CREATE INDEX token_code ON token_idx (type, param, code, system)",
    "CREATE INDEX token_system ON token_idx (type, param, system) WHERE system IS NOT NULL",
    f"CREATE TABLE string_idx ({_INDEX_COLUMNS}, value TEXT NOT NULL, exact TEXT NOT NULL, "
    f"{_INDEX_KEY}",
    # One index serves start, contains and exact: value is normalize(exact), so an :exact
    # search is an equality on value and then on exact (a second index would cost every
    # write a page for each string value, and names have many).
    "CREATE INDEX string_value ON string_idx (type, param, value, exact)",
    f"CREATE TABLE reference_idx ({_INDEX_COLUMNS}, target_type TEXT, target_id TEXT, "
    f"url TEXT, version TEXT, {_INDEX_KEY}",
    "CREATE INDEX reference_target ON reference_idx (type, param, target_id, target_type)",
    "CREATE INDEX reference_url ON reference_idx (type, param, url, version) "
    "WHERE url IS NOT NULL",
    f"CREATE TABLE date_idx ({_INDEX_COLUMNS}, low TEXT NOT NULL, high TEXT NOT NULL, "
    f"{_INDEX_KEY}",
    "CREATE INDEX date_low ON date_idx (type, param, low, high)",
    "CREATE INDEX date_high ON date_idx (type, param, high, low)",
    f"CREATE TABLE number_idx ({_INDEX_COLUMNS}, low REAL NOT NULL, high REAL NOT NULL, "
    f"{_INDEX_KEY}",
    "CREATE INDEX number_low ON number_idx (type, param, low, high)",
    "CREATE INDEX number_high ON number_idx (type, param, high, low)",
    f"CREATE TABLE quantity_idx ({_INDEX_COLUMNS}, low REAL NOT NULL, high REAL NOT NULL, "
    f"system TEXT, code TEXT, unit TEXT, {_INDEX_KEY}",
    "CREATE INDEX quantity_low ON quantity_idx (type, param, low, high)",
    "CREATE INDEX quantity_high ON quantity_idx (type, param, high, low)",
    "CREATE INDEX quantity_code ON quantity_idx (type, param, code, low, high, system)",
    f"CREATE TABLE uri_idx ({_INDEX_COLUMNS}, uri TEXT NOT NULL, {_INDEX_KEY}",
    "CREATE INDEX uri_uri ON uri_idx (type, param, uri)",
)

# Migrations from version n to n + 1, applied in order inside one transaction.
MIGRATIONS: dict[int, tuple[str, ...]] = {}


@dataclass(frozen=True, slots=True)
class _IndexTable:
    """How one kind of index value is stored: table, value columns, and the row they make."""

    name: str
    columns: tuple[str, ...]
    row: Callable[[Any], tuple[Any, ...]]
    insert: str = ""

    def __post_init__(self) -> None:
        names = ("rid", "seq", "type", "param", *self.columns)
        sql = f"INSERT INTO {self.name} ({', '.join(names)}) VALUES ({_marks(len(names))})"
        object.__setattr__(self, "insert", sql)


_INDEX_TABLES: dict[type, _IndexTable] = {
    TokenValue: _IndexTable("token_idx", ("system", "code", "text"),
                            lambda v: (v.system, v.code, v.text)),
    StringValue: _IndexTable("string_idx", ("value", "exact"), lambda v: (v.value, v.exact)),
    ReferenceValue: _IndexTable("reference_idx", ("target_type", "target_id", "url", "version"),
                                lambda v: (v.target_type, v.target_id, v.url, v.version)),
    DateValue: _IndexTable("date_idx", ("low", "high"), lambda v: (v.low, v.high)),
    NumberValue: _IndexTable("number_idx", ("low", "high"), lambda v: (v.low, v.high)),
    QuantityValue: _IndexTable("quantity_idx", ("low", "high", "system", "code", "unit"),
                               lambda v: (v.low, v.high, v.system, v.code, v.unit)),
    UriValue: _IndexTable("uri_idx", ("uri",), lambda v: (v.uri,)),
}
_TABLE_OF_KIND = {t.name.removesuffix("_idx"): t.name for t in _INDEX_TABLES.values()}


# -- connections ----------------------------------------------------------------------


def _connect(path: Path, busy_ms: int, trace: Callable[[str], None] | None) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT), tuned for a large database."""
    # check_same_thread=False: every call runs on the event-loop thread, but the loop's
    # thread need not be the one that opened the storage (a CLI, a test harness).
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           cached_statements=512)
    # synchronous=NORMAL in WAL mode: a commit is written to the WAL file (the OS page
    # cache) before COMMIT returns, but not fsynced. A commit therefore survives the
    # process being killed (kill -9, a crash) because the kernel still writes the pages;
    # it may be lost on power loss or a kernel crash, which we accept for the much higher
    # write rate (no fsync per commit). The database is never corrupted either way.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of page cache per connection
    conn.execute("PRAGMA mmap_size = 1073741824")  # read the first GiB through mmap
    conn.execute("PRAGMA temp_store = MEMORY")  # sort b-trees for ORDER BY stay in memory
    if trace is not None:
        conn.set_trace_callback(trace)
    return conn


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """All rows; fetching them all resets the statement, so no read snapshot stays open."""
    return conn.execute(sql, params).fetchall()


def _one(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    rows = _rows(conn, sql, params)
    return rows[0] if rows else None


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


# -- reading --------------------------------------------------------------------------

_RECORD = "type, id, version, last_updated, deleted, data, method"
_R_RECORD = "r.type, r.id, r.version, r.last_updated, r.deleted, r.data, r.method"


def _record(row: tuple[Any, ...]) -> StoredResource:
    type_, id_, version, last_updated, deleted, data, method = row
    return StoredResource(type_, id_, version, last_updated, bool(deleted), data, method)


def _read(conn: sqlite3.Connection, type: str, id: str) -> StoredResource | None:
    row = _one(conn, f"SELECT {_RECORD} FROM resources WHERE type = ? AND id = ?", (type, id))
    return _record(row) if row else None


def _vread(conn: sqlite3.Connection, type: str, id: str, version: int) -> StoredResource | None:
    row = _one(
        conn,
        "SELECT r.type, r.id, v.version, v.last_updated, v.deleted, v.data, v.method "
        "FROM resources r JOIN versions v ON v.rid = r.rid AND v.version = ? "
        "WHERE r.type = ? AND r.id = ?",
        (version, type, id),
    )
    return _record(row) if row else None


def _all_types(conn: sqlite3.Connection) -> list[str]:
    """The resource types present, by a skip-scan of the (type, ...) index: one seek each."""
    return [row[0] for row in _rows(conn, """
        WITH RECURSIVE t(type) AS (
            SELECT min(type) FROM resources
            UNION ALL
            SELECT (SELECT min(type) FROM resources WHERE type > t.type) FROM t
            WHERE t.type IS NOT NULL)
        SELECT type FROM t WHERE type IS NOT NULL""")]


# -- writing --------------------------------------------------------------------------


def _write(
    conn: sqlite3.Connection, rec: StoredResource, index: Sequence[IndexValue], expected: int
) -> None:
    """Store `rec` as the new current version if the current one is `expected`."""
    values = (rec.version, rec.last_updated, int(rec.deleted), rec.method, rec.data)
    if expected == 0:
        try:
            rid = conn.execute(
                "INSERT INTO resources (version, last_updated, deleted, method, data, type, id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (*values, rec.type, rec.id)).lastrowid
        except sqlite3.IntegrityError:  # UNIQUE(type, id): it exists already
            raise _conflict(conn, rec, expected) from None
    else:
        row = _one(conn, "UPDATE resources SET version = ?, last_updated = ?, deleted = ?, "
                   "method = ?, data = ? WHERE type = ? AND id = ? AND version = ? RETURNING rid",
                   (*values, rec.type, rec.id, expected))
        if row is None:
            raise _conflict(conn, rec, expected)
        rid = row[0]
        for table in _INDEX_TABLES.values():
            conn.execute(f"DELETE FROM {table.name} WHERE rid = ?", (rid,))
    conn.execute("INSERT INTO versions (rid, type, version, last_updated, deleted, method, data) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)", (rid, rec.type, *values))
    if not rec.deleted:
        _insert_index(conn, rid, rec.type, index)


def _conflict(conn: sqlite3.Connection, rec: StoredResource, expected: int) -> VersionConflict:
    row = _one(conn, "SELECT version FROM resources WHERE type = ? AND id = ?", (rec.type, rec.id))
    return VersionConflict(rec.type, rec.id, expected, row[0] if row else 0)


def _insert_index(
    conn: sqlite3.Connection, rid: int, type: str, index: Iterable[IndexValue]
) -> None:
    rows: dict[_IndexTable, list[tuple[Any, ...]]] = {}
    for seq, value in enumerate(dict.fromkeys(index)):  # drop exact duplicates
        table = _INDEX_TABLES[value.__class__]
        rows.setdefault(table, []).append((rid, seq, type, value.param, *table.row(value)))
    for table, batch in rows.items():
        conn.executemany(table.insert, batch)


# -- search: conditions to SQL --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rids:
    """Rows of one index table for one parameter, matching any of `alternatives`."""

    table: str
    param: str
    alternatives: tuple[Fragment, ...] = (("", []),)  # "": every value of the parameter
    negate: bool = False

    def selects(self, types: Sequence[str]) -> list[Fragment]:
        """SELECTs of the matching rids, each an index range on (type, param, value...)."""
        head = f"SELECT rid FROM {self.table} WHERE type IN ({_marks(len(types))}) AND param = ?"
        return [(f"{head} AND {sql}" if sql else head, [*types, self.param, *params])
                for sql, params in self.alternatives]

    def exists(self) -> Fragment:
        """Whether row r has a matching value: a seek on the table's (rid, seq) key. The
        type is left out on purpose, so that SQLite cannot prefer a (type, ...) index."""
        any_value = any(not sql for sql, _ in self.alternatives)
        match = ("", []) if any_value else _or(list(self.alternatives))
        sql, params = _and(("rid = r.rid AND param = ?", [self.param]), match)
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


def _successor(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (None: no bound)."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(0xE000 if 0xD800 <= last <= 0xDFFF else last)
        prefix = prefix[:-1]
    return None


def _starts_with(column: str, prefix: str) -> Fragment:
    """`column` starts with `prefix`, as an index range (UTF-8 sorts by code point)."""
    upper = _successor(prefix)
    if upper is None:
        return ("", [])
    return (f"{column} >= ? AND {column} < ?", [prefix, upper])


def _eq(column: str, value: Any) -> Fragment:
    """`column = value`, or no constraint when value is None."""
    return (f"{column} = ?", [value]) if value is not None else ("", [])


def _and(*parts: Fragment) -> Fragment:
    present = [p for p in parts if p[0]]
    return (" AND ".join(p[0] for p in present), [x for p in present for x in p[1]])


def _token(c: TokenCondition) -> _Rids:
    system: Fragment = ("", [])
    if c.system == "":
        system = ("system IS NULL", [])
    elif c.system is not None:
        system = ("system = ?", [c.system])
    return _Rids("token_idx", c.param, (_and(_eq("code", c.code), system),), negate=c.negate)


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
        alternatives.append(_and(_eq("target_id", c.target_id),
                                 _eq("target_type", c.target_type), version))
    if c.url is not None:
        alternatives.append(_and(_eq("url", c.url), version))
    return _Rids("reference_idx", c.param, tuple(alternatives))


def _quantity(c: QuantityCondition) -> _Rids:
    unit = _and(_eq("code", c.code), _eq("system", c.system))
    ranges = _range(c.prefix, c.low, c.high)
    return _Rids("quantity_idx", c.param, tuple(_and(unit, r) for r in ranges))


def _uri(c: UriCondition) -> _Rids:
    if c.mode == "below":
        match = _starts_with("uri", c.uri)
    elif c.mode == "above":  # the indexed uri is a prefix of c.uri: look each prefix up
        prefixes = [c.uri[:n] for n in range(1, len(c.uri) + 1)]
        match = (f"uri IN ({_marks(len(prefixes))})", prefixes)
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
        sql = (f"SELECT rid FROM resources WHERE type IN ({_marks(len(types))}) "
               f"AND id IN ({_marks(len(self.ids))})")
        return [(sql, [*types, *self.ids])]

    def exists(self) -> Fragment:
        return (f"r.id IN ({_marks(len(self.ids))})", list(self.ids))


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
        return [(f"SELECT rid FROM resources WHERE type IN ({_marks(len(types))}) AND {sql}",
                 [*types, *params])]

    def exists(self) -> Fragment:
        return _point(self.condition, "r.last_updated" if self.ordered else "+r.last_updated")


_Matches = _Rids | _IdRids | _UpdatedRids


def _condition(c: Condition, by_updated: bool) -> _Matches:
    """A condition as the rows that match it: rids from an index, or a test of row r."""
    match c:
        case TokenCondition():
            return _token(c)
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
            return _Rids(_TABLE_OF_KIND[c.param_type], c.param, negate=c.missing)
        case IdCondition():
            return _IdRids(c.ids)
        case LastUpdatedCondition():
            return _UpdatedRids(c, by_updated)
    raise BadRequest(f"Search condition {type(c).__name__} is not supported by this engine")


@dataclass(frozen=True, slots=True)
class _Clause:
    """One OR-clause; unless it has a negation, it can also be read as rids from indexes."""

    conditions: tuple[_Matches, ...]
    types: tuple[str, ...]

    @property
    def can_drive(self) -> bool:
        """Whether the search can start from this clause's rids."""
        return bool(self.conditions) and not any(c.negate for c in self.conditions)

    def rids(self) -> Fragment:
        selects = [select for c in self.conditions for select in c.selects(self.types)]
        return (" UNION ALL ".join(s for s, _ in selects), [p for _, ps in selects for p in ps])

    def driving(self) -> Fragment:
        """`r.rid IN (...)`: SQLite reads the index ranges, then the rows by rid."""
        sql, params = self.rids()
        return (f"r.rid IN ({sql})", params)

    def filtering(self) -> Fragment:
        """A test of row r, without reading the index ranges (the search starts elsewhere)."""
        return _or([c.exists() for c in self.conditions])


def _or(parts: list[Fragment]) -> Fragment:
    if not parts:
        return ("0", [])  # an empty OR matches nothing
    return ("(" + " OR ".join(f"({s})" for s, _ in parts) + ")", [p for _, ps in parts for p in ps])


def _clause(clause: Clause, types: Sequence[str], by_updated: bool) -> _Clause:
    return _Clause(tuple(_condition(c, by_updated) for c in clause), tuple(types))


_SORT_COLUMNS = {"_id": "r.id", "_lastUpdated": "r.last_updated"}


def _order_by(query: SearchQuery, driven: bool) -> str:
    """ORDER BY the sort keys, then rid. When the search starts from a clause's rids, the
    keys are written `+column` so that SQLite sorts those few rows instead of walking the
    type's rows in key order (which it would prefer, to spare itself a sort)."""
    keys = []
    for key in query.sort:
        column = _SORT_COLUMNS.get(key.param)
        if column is None:
            raise BadRequest(f"Sorting by '{key.param}' is not supported", expression=("_sort",))
        column = f"+{column}" if driven else column
        keys.append(f"{column} DESC" if key.descending else column)
    return ", ".join([*keys, "r.rid"])


@dataclass(frozen=True, slots=True)
class _Plan:
    """WHERE clauses for the page and for the total; `driven`: the page starts from rids."""

    page: Fragment
    count: Fragment
    driven: bool
    empty: bool = False


def _plan(conn: sqlite3.Connection, query: SearchQuery, probe_limit: int) -> _Plan:
    """Choose where the search starts, from how many rows each clause's index ranges hold.

    SQLite has no statistics on our values (gender=female matches half the patients,
    identifier=X one), so we count up to `probe_limit` index rows per clause. The search
    starts from the smallest clause and tests the others on its rows. When even that one
    is large, the page walks the rows in result order and tests every clause, stopping
    after `count` matches, instead of reading and sorting all the matches first.
    """
    base: list[Fragment] = [("r.deleted = 0", [])]
    if query.types:
        base.append((f"r.type IN ({_marks(len(query.types))})", list(query.types)))
    types = list(query.types) if query.types else _all_types(conn)
    by_updated = bool(query.sort) and query.sort[0].param == "_lastUpdated"
    clauses = [_clause(clause, types, by_updated) for clause in query.clauses]
    walk = _and(*base, *(c.filtering() for c in clauses))
    drivers = [c for c in clauses if c.can_drive]
    if not drivers:
        return _Plan(walk, walk, driven=False)
    sizes = [_probe(conn, c, max(probe_limit, 1)) for c in drivers]
    if min(sizes) == 0:
        return _Plan(walk, walk, driven=False, empty=True)
    best = drivers[sizes.index(min(sizes))]
    start = _and(*base, best.driving(), *(c.filtering() for c in clauses if c is not best))
    if min(sizes) < probe_limit:
        return _Plan(start, start, driven=True)
    return _Plan(walk, start, driven=False)


def _probe(conn: sqlite3.Connection, clause: _Clause, limit: int) -> int:
    """The clause's index rows, counted up to `limit`."""
    sql, params = clause.rids()
    return _one(conn, f"SELECT count(*) FROM ({sql} LIMIT ?)", [*params, limit])[0]


def _search(conn: sqlite3.Connection, query: SearchQuery, probe_limit: int) -> Page:
    plan = _plan(conn, query, probe_limit)
    if plan.empty:
        return Page([], None if query.total == "none" else 0)
    resources: list[StoredResource] = []
    if query.count > 0:
        sql, params = plan.page
        select = (f"SELECT {_R_RECORD} FROM resources r WHERE {sql} "
                  f"ORDER BY {_order_by(query, plan.driven)} LIMIT ? OFFSET ?")
        rows = _rows(conn, select, [*params, query.count, query.offset])
        resources = [_record(row) for row in rows]
    total = None
    if query.total != "none":
        sql, params = plan.count
        total = _one(conn, f"SELECT count(*) FROM resources r WHERE {sql}", params)[0]
    return Page(resources, total)


# -- history --------------------------------------------------------------------------


def _history_where(conn: sqlite3.Connection, q: HistoryQuery) -> Fragment | None:
    """WHERE over `versions v` for the query, or None when the instance does not exist."""
    parts: list[Fragment] = []
    if q.type is not None and q.id is not None:
        row = _one(conn, "SELECT rid FROM resources WHERE type = ? AND id = ?", (q.type, q.id))
        if row is None:
            return None
        parts.append(("v.rid = ?", [row[0]]))
    elif q.type is not None:
        parts.append(("v.type = ?", [q.type]))
    if q.since is not None:
        parts.append(("v.last_updated >= ?", [q.since]))
    if q.at is not None:
        parts.append(("v.last_updated <= ? AND v.version = (SELECT max(w.version) FROM versions w "
                      "WHERE w.rid = v.rid AND w.last_updated <= ?)", [q.at, q.at]))
    return _and(*parts) if parts else ("1", [])


def _history(conn: sqlite3.Connection, q: HistoryQuery) -> Page:
    found = _history_where(conn, q)
    if found is None:
        return Page([], 0)
    where, params = found
    sql = ("SELECT r.type, r.id, v.version, v.last_updated, v.deleted, v.data, v.method "
           f"FROM versions v JOIN resources r ON r.rid = v.rid WHERE {where} "
           "ORDER BY v.last_updated DESC, v.version DESC, v.vid DESC LIMIT ? OFFSET ?")
    resources = [_record(row) for row in _rows(conn, sql, [*params, q.count, q.offset])]
    total = _one(conn, f"SELECT count(*) FROM versions v WHERE {where}", params)[0]
    return Page(resources, total)


# -- write transactions -------------------------------------------------------------


class _Writes:
    """The write connection and its lock, with group commit.

    Write transactions run one at a time (`lock`, and BEGIN IMMEDIATE against other
    processes). When transactions are queued behind the one that finishes, it does not
    COMMIT: the next ones continue the same SQLite transaction, each inside a SAVEPOINT
    (so each still rolls back alone), and one COMMIT makes the group durable. Every
    member's `transaction()` returns only after that COMMIT, so nothing is acknowledged
    before it is committed, and a failed COMMIT fails every member. A COMMIT writes each
    changed page once however many transactions changed it, so under load this divides
    the cost of the WAL writes (the largest part of a small write) by the group's size.
    """

    def __init__(self, conn: sqlite3.Connection, lock_timeout: float) -> None:
        self.conn = conn
        self.lock = asyncio.Lock()
        self.lock_timeout = lock_timeout
        self.on_commit: Callable[[], None] = lambda: None
        self._queued = 0  # transactions waiting for the lock
        self._group: asyncio.Future[None] | None = None  # done when the group commits
        self._committer: asyncio.Task[None] | None = None

    @property
    def in_group(self) -> bool:
        return self._group is not None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[sqlite3.Connection]:
        self._queued += 1
        try:
            await self.lock.acquire()
        finally:
            self._queued -= 1
        try:
            group = self._group or await self._begin()
            try:
                try:
                    self.conn.execute("SAVEPOINT tx")
                    yield self.conn
                    self.conn.execute("RELEASE tx")
                except BaseException:
                    self._undo(group)
                    raise
                if not self._queued:  # let ready tasks queue up behind: they join the group
                    await asyncio.sleep(0)
            finally:
                self._finish(group)
        finally:
            self.lock.release()
        await asyncio.shield(group)  # acknowledged only once committed

    async def _begin(self) -> asyncio.Future[None]:
        """BEGIN IMMEDIATE, retried with asyncio.sleep while another process writes."""
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.001
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as error:
                if not _is_busy(error) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        self._group = asyncio.get_running_loop().create_future()
        return self._group

    def _undo(self, group: asyncio.Future[None]) -> None:
        """Roll back the member's savepoint; if SQLite cannot, the whole group fails."""
        try:
            self.conn.execute("ROLLBACK TO tx")
            self.conn.execute("RELEASE tx")
        except sqlite3.Error as error:
            self._fail(group, error)

    def _finish(self, group: asyncio.Future[None]) -> None:
        """COMMIT the group, or leave it open for the transactions queued behind."""
        if group.done():
            return
        if not self._queued:
            self._commit(group)
        elif self._committer is None:  # commits even if the queued ones are cancelled
            self._committer = asyncio.get_running_loop().create_task(self._commit_queued())

    async def _commit_queued(self) -> None:
        async with self.lock:  # after the transactions queued now, which join the group
            self._committer = None
            if self._group is not None:
                self._commit(self._group)

    def _commit(self, group: asyncio.Future[None]) -> None:
        try:
            self.conn.execute("COMMIT")
        except BaseException as error:
            self._fail(group, error)
            return
        self._group = None
        group.set_result(None)
        self.on_commit()

    def _fail(self, group: asyncio.Future[None], error: BaseException) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._group = None
        if not group.done():
            group.set_exception(error)
            group.add_done_callback(lambda f: f.exception())  # retrieved by whoever waits

    async def drain(self) -> None:
        """Wait for a queued group commit."""
        if self._committer is not None:
            await self._committer


# -- checkpoints ----------------------------------------------------------------------


class _Checkpoints:
    """WAL checkpoints run on a worker thread between write transactions.

    A checkpoint copies committed WAL pages into the database file and fsyncs both, which
    takes from one to tens of milliseconds. SQLite's automatic checkpoint would run it
    inside a COMMIT, on the event loop, every thousand pages (a few dozen creates) and
    stall every request meanwhile. Here a task takes the write lock after enough commits
    (so no local write runs meanwhile and the checkpoint completes, which lets the next
    writer restart the WAL from its beginning instead of growing it) and runs a RESTART
    checkpoint on a thread: the loop keeps serving reads, writers wait asynchronously.
    """

    def __init__(self, path: Path, writes: _Writes, every: int, interval: float) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA busy_timeout = 2000")  # on the worker thread: may wait
        self._writes = writes
        self._every = every
        self._interval = interval
        self._commits = 0
        self._last = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def committed(self) -> None:
        """Count a commit; start a checkpoint when enough commits or time went by."""
        self._commits += 1
        due = self._commits >= self._every or time.monotonic() - self._last >= self._interval
        if due and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            async with self._writes.lock:
                if self._writes.in_group:  # its commit is queued; it will call us again
                    return
                self._commits, self._last = 0, time.monotonic()
                await asyncio.to_thread(self._checkpoint)
        finally:
            self._task = None

    def _checkpoint(self) -> None:
        try:
            self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error as error:  # the next checkpoint will catch up
            log.warning("WAL checkpoint of %s failed: %s", self._conn, error)

    async def close(self) -> None:
        if self._task is not None:
            await self._task
        self._conn.close()


# -- the engine -----------------------------------------------------------------------


class SQLiteTx:
    """One write transaction on the write connection; reads see its own writes."""

    def __init__(self, conn: sqlite3.Connection, probe_limit: int) -> None:
        self._conn = conn
        self._probe_limit = probe_limit

    async def read(self, type: str, id: str) -> StoredResource | None:
        return _read(self._conn, type, id)

    async def search(self, query: SearchQuery) -> Page:
        return _search(self._conn, query, self._probe_limit)

    async def write(
        self, rec: StoredResource, index: Sequence[IndexValue], *, expected_version: int
    ) -> None:
        """Store a new version if the current one is `expected_version`, else VersionConflict."""
        _write(self._conn, rec, index, expected_version)

    async def lock(self, key: str) -> None:
        """Nothing to do: a write transaction already excludes every other writer.

        It holds the process's write lock and SQLite's (BEGIN IMMEDIATE) from start to
        end, so no other transaction can run between this one's search and its write.
        """


class SQLiteStorage:
    """The `Storage` port on one SQLite file (created with its schema on `open`)."""

    def __init__(
        self,
        path: str | Path,
        *,
        lock_timeout: float = 30.0,
        checkpoint_every: int = 100,
        checkpoint_interval: float = 1.0,
        probe_limit: int = 2000,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        """`lock_timeout`: seconds to wait for another process's write transaction;
        `checkpoint_every` commits or `checkpoint_interval` seconds: when to checkpoint;
        `probe_limit`: a search starts from a clause with fewer index rows than this (see
        `_plan`; 0 makes every search walk the rows);
        `trace`: called with every SQL statement run (for debugging and plan tests)."""
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.probe_limit = probe_limit
        self._checkpoints: _Checkpoints | None = None
        self._trace = trace
        self._writes: _Writes | None = None
        self._reader: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Connect and create or migrate the schema; safe on an existing file."""
        if self._writes is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = _connect(self.path, busy_ms=5000, trace=self._trace)
        self._writes = _Writes(writer, self.lock_timeout)
        try:
            writer.execute("PRAGMA journal_mode = WAL")  # persistent in the file
            writer.execute("PRAGMA journal_size_limit = 67108864")  # trim the WAL to 64 MiB
            async with self.transaction():
                _migrate(writer)
        except BaseException:
            await self.close()
            raise
        # From now on the writer never waits inside SQLite, which would block the event
        # loop: `_Writes` waits for other processes' write locks with asyncio.sleep, and
        # once a transaction holds the lock, WAL lets it read and write without waiting.
        writer.execute("PRAGMA busy_timeout = 0")
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # see _Checkpoints
        self._reader = _connect(self.path, busy_ms=5000, trace=self._trace)
        self._checkpoints = _Checkpoints(self.path, self._writes, self.checkpoint_every,
                                         self.checkpoint_interval)
        self._writes.on_commit = self._checkpoints.committed

    async def close(self) -> None:
        if self._writes is not None:
            await self._writes.drain()
        if self._checkpoints is not None:
            await self._checkpoints.close()
            self._checkpoints = None
        for conn in (self._reader, self._writes.conn if self._writes else None):
            if conn is not None:
                conn.close()
        self._reader = self._writes = None

    async def read(self, type: str, id: str) -> StoredResource | None:
        return _read(self._read_conn, type, id)

    async def vread(self, type: str, id: str, version: int) -> StoredResource | None:
        return _vread(self._read_conn, type, id, version)

    async def search(self, query: SearchQuery) -> Page:
        with self._snapshot() as conn:
            return _search(conn, query, self.probe_limit)

    async def history(self, query: HistoryQuery) -> Page:
        with self._snapshot() as conn:
            return _history(conn, query)

    async def iter_current(self, type: str) -> AsyncIterator[StoredResource]:
        """Live resources of `type` in insertion order, fetched in batches by rid."""
        after = 0
        while True:
            rows = _rows(self._read_conn,
                         f"SELECT rid, {_RECORD} FROM resources WHERE type = ? AND deleted = 0 "
                         "AND rid > ? ORDER BY rid LIMIT ?", (type, after, ITER_BATCH))
            for row in rows:
                yield _record(row[1:])
            if len(rows) < ITER_BATCH:
                return
            after = rows[-1][0]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteTx]:
        """Commit on normal exit, roll back on any exception (cancellation included).

        Returns only once the writes are committed (see `_Writes`). Transactions do not
        nest: the write lock is not re-entrant."""
        async with self._write_queue.transaction() as conn:
            yield SQLiteTx(conn, self.probe_limit)

    @property
    def _read_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("SQLiteStorage is not open")
        return self._reader

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """The read connection in one read transaction, so a page and its total agree
        even while another process commits."""
        conn = self._read_conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    @property
    def _write_queue(self) -> _Writes:
        if self._writes is None:
            raise RuntimeError("SQLiteStorage is not open")
        return self._writes


def _migrate(conn: sqlite3.Connection) -> None:
    """Create the schema in an empty file, or bring an older one up to SCHEMA_VERSION."""
    current = _one(conn, "PRAGMA user_version")[0]
    if current > SCHEMA_VERSION:
        raise RuntimeError(f"{current} is a newer schema than this server knows ({SCHEMA_VERSION})")
    if current == 0:
        statements: Iterable[str] = SCHEMA
    else:
        statements = [s for v in range(current, SCHEMA_VERSION) for s in MIGRATIONS[v]]
    for statement in statements:
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
