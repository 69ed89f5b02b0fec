"""The file's schema, its migrations, the index tables, and how connections are set up.

Schema (PRAGMA user_version = 5):

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
    composite_idx  rid, seq, type, param, then for each component i (up to three) the
               columns s<i>, c<i>, lo<i>, hi<i>, x<i> (see `values.component_fields`): one row per
               combination of component values taken from one element, so a composite
               condition is one row matching every component. Indexed on the first
               component's code (every R4 composite starts with a token or a reference).
    geo_idx    rid, seq, type, param, lat, lon: positions for `near`, indexed on (lat, lon).
    type_counts  type, live: how many live resources of each type, kept by triggers on
               `resources`, so the total of a search without criteria is not a count of
               a million rows (`_summary=count`, `GET /Patient`).

    leases, generations, saved_state  coordination between processes sharing the file
               (the leader lease, change counters, resumable jobs' checkpoints).

    queue_heads, queue_entries  outboxes (see `queues`): per queue its last sequence
               number, and its entries (queue, seq, payload) clustered by (queue, seq).

Version 2 added composite_idx, geo_idx and the token text index (`:text`); version 3 the
type counts; version 4 the coordination tables; version 5 the outbox queues.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_server.search.types.special import distance_km
from fhir_server.search.values import (
    COMPONENT_FIELDS,
    ComponentValue,
    CompositeValue,
    DateValue,
    GeoValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    component_fields,
)
from fhir_server.storage.sqlite.sql import fetch_one, marks

SCHEMA_VERSION = 5
COMPONENTS = 3  # the most components an R4 composite parameter has


_INDEX_COLUMNS = (
    "rid INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL"
)
_INDEX_KEY = "PRIMARY KEY (rid, seq)) WITHOUT ROWID"


SCHEMA: tuple[str, ...] = (
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
    "CREATE INDEX reference_url ON reference_idx (type, param, url, version) WHERE url IS NOT NULL",
    f"CREATE TABLE date_idx ({_INDEX_COLUMNS}, low TEXT NOT NULL, high TEXT NOT NULL, {_INDEX_KEY}",
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
_COMPONENT_COLUMNS = tuple(f"{name}{i}" for i in range(COMPONENTS) for name in COMPONENT_FIELDS)
VERSION_2 = (
    f"CREATE TABLE composite_idx ({_INDEX_COLUMNS}, {', '.join(_COMPONENT_COLUMNS)}, {_INDEX_KEY}",
    "CREATE INDEX composite_first ON composite_idx (type, param, c0, s0)",
    f"CREATE TABLE geo_idx ({_INDEX_COLUMNS}, lat REAL NOT NULL, lon REAL NOT NULL, {_INDEX_KEY}",
    "CREATE INDEX geo_position ON geo_idx (type, param, lat, lon)",
    "CREATE INDEX token_text ON token_idx (type, param, text) WHERE text IS NOT NULL",
)
_COUNT_TRIGGERS = (
    "CREATE TABLE type_counts (type TEXT PRIMARY KEY, live INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TRIGGER type_counts_insert AFTER INSERT ON resources WHEN NEW.deleted = 0
       BEGIN
         INSERT INTO type_counts (type, live) VALUES (NEW.type, 1)
           ON CONFLICT (type) DO UPDATE SET live = live + 1;
       END""",
    """CREATE TRIGGER type_counts_update AFTER UPDATE OF deleted ON resources
       WHEN OLD.deleted != NEW.deleted
       BEGIN
         INSERT INTO type_counts (type, live) VALUES (NEW.type, 1 - 2 * NEW.deleted)
           ON CONFLICT (type) DO UPDATE SET live = live + excluded.live;
       END""",
    """CREATE TRIGGER type_counts_delete AFTER DELETE ON resources WHEN OLD.deleted = 0
       BEGIN
         UPDATE type_counts SET live = live - 1 WHERE type = OLD.type;
       END""",
)
VERSION_3 = (
    *_COUNT_TRIGGERS,
    "INSERT INTO type_counts (type, live) "
    "SELECT type, count(*) FROM resources WHERE deleted = 0 GROUP BY type",
)
VERSION_4 = (  # coordination between processes (see `coordination`)
    "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE generations (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE saved_state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
)
VERSION_5 = (  # outboxes written atomically with resources (see `queues`)
    "CREATE TABLE queue_heads (queue TEXT PRIMARY KEY, last INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE queue_entries (queue TEXT NOT NULL, seq INTEGER NOT NULL, "
    "payload BLOB NOT NULL, PRIMARY KEY (queue, seq)) WITHOUT ROWID",
)
SCHEMA = SCHEMA + VERSION_2 + _COUNT_TRIGGERS + VERSION_4 + VERSION_5

# Migrations from version n to n + 1, applied in order inside one transaction.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: VERSION_2,
    2: VERSION_3,
    3: VERSION_4,
    4: VERSION_5,
}


@dataclass(frozen=True, slots=True)
class IndexTable:
    """How one kind of index value is stored: table, value columns, and the row they make."""

    name: str
    columns: tuple[str, ...]
    row: Callable[[Any], tuple[Any, ...]]
    insert: str = ""

    def __post_init__(self) -> None:
        names = ("rid", "seq", "type", "param", *self.columns)
        sql = f"INSERT INTO {self.name} ({', '.join(names)}) VALUES ({marks(len(names))})"
        object.__setattr__(self, "insert", sql)


INDEX_TABLES: dict[type, IndexTable] = {
    TokenValue: IndexTable(
        "token_idx", ("system", "code", "text"), lambda v: (v.system, v.code, v.text)
    ),
    StringValue: IndexTable("string_idx", ("value", "exact"), lambda v: (v.value, v.exact)),
    ReferenceValue: IndexTable(
        "reference_idx",
        ("target_type", "target_id", "url", "version"),
        lambda v: (v.target_type, v.target_id, v.url, v.version),
    ),
    DateValue: IndexTable("date_idx", ("low", "high"), lambda v: (v.low, v.high)),
    NumberValue: IndexTable("number_idx", ("low", "high"), lambda v: (v.low, v.high)),
    QuantityValue: IndexTable(
        "quantity_idx",
        ("low", "high", "system", "code", "unit"),
        lambda v: (v.low, v.high, v.system, v.code, v.unit),
    ),
    UriValue: IndexTable("uri_idx", ("uri",), lambda v: (v.uri,)),
    CompositeValue: IndexTable(
        "composite_idx", _COMPONENT_COLUMNS, lambda v: composite_row(v.parts)
    ),
    GeoValue: IndexTable("geo_idx", ("lat", "lon"), lambda v: (v.latitude, v.longitude)),
}
TABLE_OF_KIND = {t.name.removesuffix("_idx"): t.name for t in INDEX_TABLES.values()}
TABLE_OF_KIND["special"] = "geo_idx"


def composite_row(parts: tuple[ComponentValue, ...]) -> tuple[Any, ...]:
    padded = [component_fields(p) for p in parts[:COMPONENTS]]
    padded += [(None,) * 5] * (COMPONENTS - len(padded))
    return tuple(x for row in padded for x in row)


def connect(path: Path, busy_ms: int, trace: Callable[[str], None] | None) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT), tuned for a large database."""
    # check_same_thread=False: every call runs on the event-loop thread, but the loop's
    # thread need not be the one that opened the storage (a CLI, a test harness).
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=512
    )
    # synchronous=NORMAL in WAL mode: a commit is written to the WAL file (the OS page
    # cache) before COMMIT returns, but not fsynced. A commit therefore survives the
    # process being killed (kill -9, a crash) because the kernel still writes the pages;
    # it may be lost on power loss or a kernel crash, which we accept for the much higher
    # write rate (no fsync per commit). The database is never corrupted either way.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    # Memory: 16 MiB of page cache per connection and no mmap. Pages read through mmap
    # count towards the server's resident set (the whole hot part of the file would), and
    # the kernel's page cache serves re-reads of a larger file just as well.
    conn.execute("PRAGMA cache_size = -16384")
    conn.execute("PRAGMA mmap_size = 0")
    conn.execute("PRAGMA temp_store = MEMORY")  # sort b-trees for ORDER BY stay in memory
    # `near`: the exact great-circle test after the bounding box of the index range.
    conn.create_function("distance_km", 4, distance_km, deterministic=True)
    if trace is not None:
        conn.set_trace_callback(trace)
    return conn


APPLICATION_ID = 0x46484952  # "FHIR": PRAGMA application_id of our database files
SQLITE_HEADER = b"SQLite format 3\x00"


class NotOurDatabase(RuntimeError):
    """The file is not a database of this server (another program's, or not SQLite)."""


def problem(conn: sqlite3.Connection) -> str | None:
    """Why this server must not use the database on `conn`, or None when it may."""
    current = fetch_one(conn, "PRAGMA user_version")[0]
    application = fetch_one(conn, "PRAGMA application_id")[0]
    if application not in (0, APPLICATION_ID):
        return f"it belongs to another program (application id {application:#x})"
    if current > SCHEMA_VERSION:
        return (
            f"its schema (version {current}) is newer than this server knows "
            f"({SCHEMA_VERSION}): upgrade the server"
        )
    tables = fetch_one(conn, "SELECT count(*) FROM sqlite_master WHERE type = 'table'")[0]
    if current == 0 and tables:
        return "it holds tables of another program (and no schema version of ours)"
    return None


def check_file(path: Path) -> str | None:
    """Why the database file at `path` cannot be used (read-only look), or None."""
    if not path.exists():
        return None
    try:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_HEADER))
    except OSError as error:
        return f"cannot read {path}: {error.strerror}"
    if head and head != SQLITE_HEADER:
        return f"{path} is not a database of this server: it is not a SQLite file"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = problem(conn)
        finally:
            conn.close()
    except sqlite3.Error as error:
        return f"{path} cannot be opened: {error}"
    return f"{path} is not usable: {found}" if found else None


def migrate(conn: sqlite3.Connection) -> None:
    """Create the schema in an empty file, or bring an older one up to SCHEMA_VERSION."""
    found = problem(conn)
    if found:
        raise NotOurDatabase(f"The database is not usable: {found}")
    current = fetch_one(conn, "PRAGMA user_version")[0]
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    if current == 0:
        statements: Iterable[str] = SCHEMA
    else:
        statements = [s for v in range(current, SCHEMA_VERSION) for s in MIGRATIONS[v]]
    for statement in statements:
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
