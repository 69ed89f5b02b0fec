"""WAL checkpoints (and planner statistics, see `statistics`) on a worker thread, between
write transactions."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fhir_server.storage.leadership import running
from fhir_server.storage.sqlite import statistics
from fhir_server.storage.sqlite.writes import Writes

log = logging.getLogger(__name__)


class Checkpoints:
    """WAL checkpoints run on a worker thread between write transactions.

    A checkpoint copies committed WAL pages into the database file and fsyncs both, which
    takes from one to tens of milliseconds. SQLite's automatic checkpoint would run it
    inside a COMMIT, on the event loop, every thousand pages (a few dozen creates) and
    stall every request meanwhile. Here a task takes the write lock after enough commits
    (so no local write runs meanwhile and the checkpoint completes, which lets the next
    writer restart the WAL from its beginning instead of growing it) and runs a RESTART
    checkpoint on a thread: the loop keeps serving reads, writers wait asynchronously.
    """

    def __init__(
        self, path: Path, writes: Writes, every: int, interval: float, *, on_commit: bool = True
    ) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA busy_timeout = 2000")  # on the worker thread: may wait
        self._writes = writes
        self._every = every
        self._interval = interval
        self._commits = 0
        self._last = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._on_commit = on_commit

    def committed(self) -> None:
        """Count a commit; start a checkpoint when enough commits or time went by (unless
        the leader process runs them: `every_interval`)."""
        if not self._on_commit:
            return
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

    @asynccontextmanager
    async def every_interval(self) -> AsyncIterator[None]:
        """Checkpoint every `interval` seconds while the block runs: with several processes
        on the file, the leader's duty (each process's own commits no longer trigger one)."""

        async def forever() -> None:
            while True:
                await asyncio.sleep(self._interval)
                if self._task is None:
                    self._task = asyncio.get_running_loop().create_task(self._run())

        async with running(forever):
            yield

    def _checkpoint(self) -> None:
        try:
            self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            statistics.refresh(self._conn)  # under the same write lock
        except sqlite3.Error as error:  # the next checkpoint will catch up
            log.warning("WAL checkpoint of %s failed: %s", self._conn, error)

    async def close(self) -> None:
        if self._task is not None:
            await self._task
        self._conn.close()
