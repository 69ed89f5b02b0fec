"""Writing: a resource's new version and its index rows, and write transactions with
group commit (SAVEPOINTs inside one SQLite transaction, one COMMIT per group)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from fhir_server import metrics
from fhir_server.errors import VersionConflict
from fhir_server.search.values import IndexValue
from fhir_server.storage.base import StoredResource
from fhir_server.storage.sqlite.schema import INDEX_TABLES, IndexTable
from fhir_server.storage.sqlite.sql import fetch_one


def write(
    conn: sqlite3.Connection, rec: StoredResource, index: Sequence[IndexValue], expected: int
) -> None:
    """Store `rec` as the new current version if the current one is `expected`."""
    values = (rec.version, rec.last_updated, int(rec.deleted), rec.method, rec.data)
    if expected == 0:
        try:
            rid = cast(
                int,
                conn.execute(  # an INSERT always sets lastrowid
                    "INSERT INTO resources"
                    " (version, last_updated, deleted, method, data, type, id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*values, rec.type, rec.id),
                ).lastrowid,
            )
        except sqlite3.IntegrityError:  # UNIQUE(type, id): it exists already
            raise _conflict(conn, rec, expected) from None
    else:
        row = fetch_one(
            conn,
            "UPDATE resources SET version = ?, last_updated = ?, deleted = ?, "
            "method = ?, data = ? WHERE type = ? AND id = ? AND version = ? "
            "RETURNING rid",
            (*values, rec.type, rec.id, expected),
        )
        if row is None:
            raise _conflict(conn, rec, expected)
        rid = row[0]
        for table in INDEX_TABLES.values():
            conn.execute(f"DELETE FROM {table.name} WHERE rid = ?", (rid,))
    conn.execute(
        "INSERT INTO versions (rid, type, version, last_updated, deleted, method, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (rid, rec.type, *values),
    )
    if not rec.deleted:
        _insert_index(conn, rid, rec.type, index)


def reindex(
    conn: sqlite3.Connection, type: str, id: str, version: int, index: Sequence[IndexValue]
) -> bool:
    """Replace the index rows of version `version` if it is still current (no new version).

    False when the resource changed or was deleted meanwhile: that write indexed it already.
    """
    row = fetch_one(
        conn,
        "SELECT rid FROM resources WHERE type = ? AND id = ? AND version = ? AND deleted = 0",
        (type, id, version),
    )
    if row is None:
        return False
    for table in INDEX_TABLES.values():
        conn.execute(f"DELETE FROM {table.name} WHERE rid = ?", (row[0],))
    _insert_index(conn, row[0], type, index)
    return True


def _conflict(conn: sqlite3.Connection, rec: StoredResource, expected: int) -> VersionConflict:
    row = fetch_one(
        conn, "SELECT version FROM resources WHERE type = ? AND id = ?", (rec.type, rec.id)
    )
    return VersionConflict(rec.type, rec.id, expected, row[0] if row else 0)


def _insert_index(
    conn: sqlite3.Connection, rid: int, type: str, index: Iterable[IndexValue]
) -> None:
    rows: dict[IndexTable, list[tuple[Any, ...]]] = {}
    for seq, value in enumerate(dict.fromkeys(index)):  # drop exact duplicates
        table = INDEX_TABLES[value.__class__]
        rows.setdefault(table, []).append((rid, seq, type, value.param, *table.row(value)))
    for table, batch in rows.items():
        conn.executemany(table.insert, batch)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class TurnLock:
    """A lock taken in turn (FIFO), except that urgent takers go before the queue: a leader
    lease renewal must not wait behind every write queued in this process, or the leader
    would lose its lease under load (and with it the duties it runs)."""

    def __init__(self) -> None:
        self._locked = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._waiting: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._locked

    async def acquire(self, *, urgent: bool = False) -> None:
        if not self._locked and not self._urgent and not self._waiting:
            self._locked = True
            return
        turn = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._waiting
        queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # given the lock, then cancelled
                self.release()
            else:
                queue.remove(turn)
            raise

    def release(self) -> None:
        self._locked = False
        for queue in (self._urgent, self._waiting):
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    self._locked = True
                    turn.set_result(None)
                    return

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class Writes:
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
        self.lock = TurnLock()
        self.lock_timeout = lock_timeout
        self.on_commit: Callable[[], None] = lambda: None
        self._queued = 0  # transactions waiting for the lock
        self._group: asyncio.Future[None] | None = None  # done when the group commits
        self._committer: asyncio.Task[None] | None = None
        self._members = 0  # transactions in the open group

    @property
    def in_group(self) -> bool:
        return self._group is not None

    @asynccontextmanager
    async def transaction(self, *, urgent: bool = False) -> AsyncIterator[sqlite3.Connection]:
        """One write transaction; an `urgent` one (a lease renewal) goes before the queued
        ones and commits its group at once instead of leaving it open for them."""
        self._queued += 1
        try:
            await self.lock.acquire(urgent=urgent)
        finally:
            self._queued -= 1
        try:
            group = self._group or await self._begin()
            self._members += 1
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
                self._finish(group, now=urgent)
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

    def _finish(self, group: asyncio.Future[None], *, now: bool = False) -> None:
        """COMMIT the group, or leave it open for the transactions queued behind."""
        if group.done():
            return
        if now or not self._queued:
            self._commit(group)
        elif self._committer is None:  # commits even if the queued ones are cancelled
            self._committer = asyncio.get_running_loop().create_task(self._commit_queued())

    async def _commit_queued(self) -> None:
        async with self.lock:  # after the transactions queued now, which join the group
            self._committer = None
            if self._group is not None:
                self._commit(self._group)

    def _commit(self, group: asyncio.Future[None]) -> None:
        started = time.perf_counter()
        try:
            self.conn.execute("COMMIT")
        except BaseException as error:
            self._fail(group, error)
            return
        metrics.commit_seconds.observe(time.perf_counter() - started)
        metrics.commit_group_size.observe(self._members)
        self._members = 0
        self._group = None
        group.set_result(None)
        self.on_commit()

    def _fail(self, group: asyncio.Future[None], error: BaseException) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._members = 0
        self._group = None
        if not group.done():
            group.set_exception(error)
            group.add_done_callback(lambda f: f.exception())  # retrieved by whoever waits

    async def drain(self) -> None:
        """Wait for a queued group commit."""
        if self._committer is not None:
            await self._committer
