"""The engine: `SQLiteStorage`, the `Storage` port on one file, and its transactions."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path

from fhir_server.search.conditions import SearchQuery
from fhir_server.search.values import IndexValue
from fhir_server.storage.base import HistoryQuery, Page, StoredResource
from fhir_server.storage.blobs import FileBlobStore
from fhir_server.storage.sqlite import coordination, planner, queues, reads, statistics, writes
from fhir_server.storage.sqlite.checkpoints import Checkpoints
from fhir_server.storage.sqlite.reads import RECORD, record
from fhir_server.storage.sqlite.schema import connect, migrate
from fhir_server.storage.sqlite.sql import fetch_all
from fhir_server.storage.sqlite.writes import Writes

ITER_BATCH = 500


class SQLiteTx:
    """One write transaction on the write connection; reads see its own writes."""

    def __init__(self, conn: sqlite3.Connection, probe_limit: int) -> None:
        self._conn = conn
        self._probe_limit = probe_limit

    async def read(self, type: str, id: str) -> StoredResource | None:
        return reads.read(self._conn, type, id)

    async def search(self, query: SearchQuery) -> Page:
        return planner.search(self._conn, query, self._probe_limit)

    async def write(
        self, rec: StoredResource, index: Sequence[IndexValue], *, expected_version: int
    ) -> None:
        """Store a new version if the current one is `expected_version`, else VersionConflict."""
        writes.write(self._conn, rec, index, expected_version)

    async def reindex(self, type: str, id: str, version: int, index: Sequence[IndexValue]) -> bool:
        return writes.reindex(self._conn, type, id, version, index)

    async def enqueue(self, queue: str, payload: bytes) -> int:
        return queues.enqueue(self._conn, queue, payload)

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
        shared: bool = False,
    ) -> None:
        """`lock_timeout`: seconds to wait for another process's write transaction;
        `checkpoint_every` commits or `checkpoint_interval` seconds: when to checkpoint;
        `probe_limit`: a search starts from a clause with fewer index rows than this (see
        `planner._plan`; 0 makes every search walk the rows);
        `trace`: called with every SQL statement run (for debugging and plan tests);
        `shared`: other server processes use the file too, and the leader among them runs
        the checkpoints (`maintenance_duty`) instead of each after its own commits."""
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.probe_limit = probe_limit
        self.shared = shared
        self._checkpoints: Checkpoints | None = None
        self._trace = trace
        self._writes: Writes | None = None
        self._reader: sqlite3.Connection | None = None

    def blobs(self, name: str = "blobs") -> FileBlobStore:
        """Binary content: files in `<database>.blobs/` (other stores: `<database>.<name>/`)."""
        return FileBlobStore(f"{self.path}.{name}")

    async def open(self) -> None:
        """Connect and create or migrate the schema; safe on an existing file."""
        if self._writes is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = connect(self.path, busy_ms=5000, trace=self._trace)
        self._writes = Writes(writer, self.lock_timeout)
        try:
            writer.execute("PRAGMA journal_mode = WAL")  # persistent in the file
            writer.execute("PRAGMA journal_size_limit = 67108864")  # trim the WAL to 64 MiB
            async with self.transaction():
                migrate(writer)
            statistics.refresh(writer)
        except BaseException:
            await self.close()
            raise
        # From now on the writer never waits inside SQLite, which would block the event
        # loop: `Writes` waits for other processes' write locks with asyncio.sleep, and
        # once a transaction holds the lock, WAL lets it read and write without waiting.
        writer.execute("PRAGMA busy_timeout = 0")
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # see Checkpoints
        self._reader = connect(self.path, busy_ms=5000, trace=self._trace)
        self._checkpoints = Checkpoints(
            self.path,
            self._writes,
            self.checkpoint_every,
            self.checkpoint_interval,
            on_commit=not self.shared,
        )
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
        return reads.read(self._read_conn, type, id)

    async def vread(self, type: str, id: str, version: int) -> StoredResource | None:
        return reads.vread(self._read_conn, type, id, version)

    async def search(self, query: SearchQuery) -> Page:
        with self._snapshot() as conn:
            return planner.search(conn, query, self.probe_limit)

    async def history(self, query: HistoryQuery) -> Page:
        with self._snapshot() as conn:
            return reads.history(conn, query)

    async def iter_current(self, type: str) -> AsyncIterator[StoredResource]:
        """Live resources of `type` in insertion order, fetched in batches by rid."""
        after = 0
        while True:
            rows = fetch_all(
                self._read_conn,
                f"SELECT rid, {RECORD} FROM resources WHERE type = ? AND deleted = 0 "
                "AND rid > ? ORDER BY rid LIMIT ?",
                (type, after, ITER_BATCH),
            )
            for row in rows:
                yield record(row[1:])
            if len(rows) < ITER_BATCH:
                return
            after = rows[-1][0]

    async def iter_latest(self, type: str) -> AsyncIterator[StoredResource]:
        """Every resource of `type`, deletions too, by rid: a row keeps its rid for life."""
        after = 0
        while True:
            rows = fetch_all(
                self._read_conn,
                f"SELECT rid, {RECORD} FROM resources WHERE type = ? AND rid > ? "
                "ORDER BY rid LIMIT ?",
                (type, after, ITER_BATCH),
            )
            for row in rows:
                yield record(row[1:])
            if len(rows) < ITER_BATCH:
                return
            after = rows[-1][0]

    def maintenance_duty(self) -> AbstractAsyncContextManager[None]:
        """The leader's upkeep of a shared file: WAL checkpoints and planner statistics
        every `checkpoint_interval` seconds."""
        if self._checkpoints is None:
            raise RuntimeError("SQLiteStorage is not open")
        return self._checkpoints.every_interval()

    # -- coordination between processes (see `coordination`) ---------------------------

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        async with self._write_queue.transaction(urgent=True) as conn:
            now = time.time()  # once the write lock is ours: the wait does not shorten it
            return coordination.acquire(conn, name, holder, now, now + seconds)

    async def release_lease(self, name: str, holder: str) -> None:
        async with self._write_queue.transaction(urgent=True) as conn:
            coordination.release(conn, name, holder)

    async def generation(self, name: str) -> int:
        return coordination.generation(self._read_conn, name)

    async def bump_generation(self, name: str) -> None:
        async with self._write_queue.transaction() as conn:
            coordination.bump(conn, name)

    async def load_state(self, key: str) -> bytes | None:
        return coordination.load(self._read_conn, key)

    async def save_state(self, key: str, value: bytes | None) -> None:
        async with self._write_queue.transaction() as conn:
            coordination.save(conn, key, value)

    async def state_keys(self, prefix: str) -> list[str]:
        return coordination.keys(self._read_conn, prefix)

    # -- outbox queues (see `queues`) ----------------------------------------------------

    async def queue_heads(self, prefix: str) -> dict[str, int]:
        return queues.heads(self._read_conn, prefix)

    async def queue_entries(
        self, queue: str, after: int, *, until: int | None = None, limit: int = 100
    ) -> list[tuple[int, bytes]]:
        return queues.entries(self._read_conn, queue, after, until, limit)

    async def queue_trim(self, queue: str, upto: int) -> None:
        async with self._write_queue.transaction() as conn:
            queues.trim(conn, queue, upto)

    async def queue_drop(self, queue: str) -> None:
        async with self._write_queue.transaction() as conn:
            queues.drop(conn, queue)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteTx]:
        """Commit on normal exit, roll back on any exception (cancellation included).

        Returns only once the writes are committed (see `Writes`). Transactions do not
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
    def _write_queue(self) -> Writes:
        if self._writes is None:
            raise RuntimeError("SQLiteStorage is not open")
        return self._writes
