"""The SQLite storage engine: the embedded default, standard-library sqlite3 in WAL mode.

Modules, one concern each:

    engine       `SQLiteStorage` (the `Storage` port on one file) and `SQLiteTx`
    schema       tables and indexes, migrations, the index tables, connection pragmas
    sql          SQL fragments and row fetching shared by the others
    reads        read, vread, history
    conditions   a search condition as SQL: rids from an index, or a test of row r
    planner      where a search starts, and its page and total queries
    writes       a resource's new version and index rows; write transactions, group commit
    checkpoints  WAL checkpoints on a worker thread

Schema (see `schema`): `resources` holds the current version of every resource, keyed by
`rid`; `versions` every version; one `<kind>_idx` table per kind of index value holds the
current index values, clustered by rid, with secondary indexes that lead with (type,
param, value...) and end with rid, so every condition is an index range that yields rids.

Search is one query on `resources r`. A clause reads either as `r.rid IN (SELECT rid FROM
<kind>_idx WHERE type IN .. AND param = ? AND <value range>)`, where SQLite starts from the
index range and fetches the rows by rid, or as `EXISTS (SELECT 1 FROM <kind>_idx WHERE rid =
r.rid ...)`, a test of a row by the clustered key; the planner chooses per query (see
`planner._plan`). Later search features plug into the same shapes: a chain is a rid
subquery over `reference_idx` joined to the target's, `_has` the reverse, sorting on a
parameter a correlated `min(value)` over the resource's clustered index rows.

Concurrency: calls run synchronously on the event-loop thread (each is short). Reads
outside a transaction use their own connection and see only committed data (WAL). A write
transaction holds an `asyncio.Lock` across its awaits and `BEGIN IMMEDIATE` on the write
connection, so write transactions are serialized within the process and across processes
that share the file; waiting for another process's lock is an asyncio.sleep loop, never a
block of the event loop. WAL checkpoints (fsyncs) run on a worker thread between write
transactions (`checkpoints.Checkpoints`), not inside a COMMIT on the loop.
"""

from fhir_server.storage.sqlite.engine import ITER_BATCH, SQLiteStorage, SQLiteTx
from fhir_server.storage.sqlite.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

__all__ = ["ITER_BATCH", "MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "SQLiteStorage", "SQLiteTx"]
