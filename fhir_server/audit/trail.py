"""The audit trail of one server process: records handed over by the request path after
each response, written in batches.

The request path pays one call (no I/O; most reads only append a tuple):

- `record(exchange)`: what the HTTP middleware, the read fast path and the HL7 v2 listener
  hand over. A read or vread goes into the flush window's read journal entry at once
  (`events.JournalWindow`: a few strings and numbers, while what it touched is at hand;
  the first read of an agent in a window builds that event's head, and the first read of
  a resource version outside the Patient finds its patients, remembered per version);
  anything else is appended to a queue;
- `record_read(ctx, type, id, status, peer, found)`: the same for a read by id answered
  outside the middleware, told in parts: `ctx` the caller's `AccessContext` (None when
  refused before it was known), `status` the HTTP status answered, `peer` the client's
  network address, `found` the `StoredResource` version returned (None when none was).
  It makes the `Exchange` the middleware would have made and records it.

A task of this process takes the window every `flush_seconds` (sooner when `take`
records wait; what arrives meanwhile waits for the next window), builds the events of the
queued records (`EventBuilder.journal_window`; reads join the window's journal entry) and
writes them, `batch_size` events at a time, in one transaction through the service: the
window's reads appended to the read journal, the other events stored with their chain
record (`chain.append`). Every `index_seconds`, and before each interaction that reads
AuditEvents (`catch_up`), the journaled reads are stored as AuditEvents, merged
(`journal`; `index_journal`). `close()` writes what is left and indexes the journal: a
clean shutdown (SIGTERM) loses nothing; a crash (SIGKILL, power) loses at most the
records of the last `flush_seconds` (what was journaled is indexed by the next process to
run). Should the database refuse a batch, its events stay ready for the next flush (at
most `max_queued` records, and as many reads, are kept; beyond, the oldest are dropped
and counted in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import orjson

from fhir_server.audit import chain, journal
from fhir_server.audit.events import EventBuilder, JournalWindow
from fhir_server.audit.index import index_event
from fhir_server.audit.journal import CURSOR, JOURNAL, MAX_ENTITIES, Merger
from fhir_server.audit.records import Exchange
from fhir_server.context import AccessContext
from fhir_server.errors import VersionConflict
from fhir_server.interactions.common import new_id, now_instant, stamp
from fhir_server.interactions.observed import Observed
from fhir_server.interactions.service import FhirService
from fhir_server.model import fhirjson
from fhir_server.storage.base import StorageTx, StoredResource

log = logging.getLogger("fhir_server.audit")


class AuditTrail:
    def __init__(
        self,
        service: FhirService,
        builder: EventBuilder,
        *,
        flush_seconds: float = 1.0,
        batch_size: int = 500,
        max_queued: int = 100_000,
        key: bytes | None = None,
        take: int = 10_000,
        index_seconds: float = 60.0,
        max_entities: int = MAX_ENTITIES,
    ) -> None:
        self.service = service
        self.builder = builder
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.max_queued = max_queued
        self.key = key
        self.take = take  # records per flush window at most
        self.index_seconds = index_seconds  # how often the read journal is indexed
        self.max_entities = max_entities
        self.journal_take = 1_000  # journal entries indexed per transaction at most
        self._queue: deque[Exchange] = deque()
        self._ready: deque[dict[str, Any]] = deque()  # events built, not yet stored
        self._journal: deque[bytes] = deque()  # journal entries made, not yet written
        self._window = JournalWindow(builder)  # the reads recorded in this flush window
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._indexing = asyncio.Lock()
        self.dropped = 0
        self.written = 0

    def record(self, exchange: Exchange) -> None:
        """Queue one exchange for the next batch (called on the request path, after the
        response). A read goes into this window's journal entry at once (its objects go
        with the request); everything else is queued and built by the writer."""
        window = self._window
        try:
            added = window.add(exchange)
        except Exception:  # a bug: the writer builds it (bare if need be)
            log.exception("audit: a %s exchange could not be journaled", exchange.kind)
            added = False
        if added:
            if len(window.reads) >= self.take:
                self._wake.set()
            if len(window.reads) > self.max_queued:
                self._trim()
            return
        self._queue.append(exchange)
        if len(self._queue) >= self.take:
            self._wake.set()

    def record_read(
        self,
        ctx: AccessContext | None,
        type: str,
        id: str,
        status: int,
        peer: str | None,
        found: StoredResource | None = None,
    ) -> None:
        """Record one read by id answered outside the middleware (see the module doc)."""
        seen = Observed(context=ctx, resources=[found] if found is not None else [])
        self.record(Exchange("rest", "GET", f"{type}/{id}", b"", status, peer, time.time(), seen))

    async def start(self) -> AuditTrail:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def close(self) -> None:
        """Stop the timer, write everything still queued and index the journal."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue or self._window.reads or self._ready or self._journal:
            if not await self.flush():
                log.error(
                    "audit: %d event(s) and %d record(s) could not be written at shutdown",
                    len(self._ready),
                    len(self._queue),
                )
                break
        with contextlib.suppress(Exception):  # logged; a later start indexes what is left
            while await self.index_journal():
                pass

    async def catch_up(self) -> None:
        """Write what this process has queued and store the whole read journal as
        AuditEvents now: run before each interaction that reads AuditEvents (searches,
        `$access-log`; `FhirService.before_reading`), so that an auditor sees every
        access this process answered, not only those of the last index pass. Should the
        database refuse, what is stored already is shown (the error was logged)."""
        await self._write_window()
        with contextlib.suppress(Exception):
            while await self.index_journal() >= self.journal_take:
                pass

    async def _run(self) -> None:
        due = time.monotonic() + self.index_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            await self._write_window()
            if time.monotonic() >= due:
                with contextlib.suppress(Exception):  # logged; the next turn tries again
                    while await self.index_journal() >= self.journal_take:
                        pass
                due = time.monotonic() + self.index_seconds

    async def _write_window(self) -> None:
        """Write what was queued when the window closed, and only that: the records that
        arrive while it is written wait for the next window. (Flushing until the queue is
        empty would, under a steady load, write a transaction of a few records every few
        milliseconds: no coalescing, and a commit per handful of reads.)"""
        due = len(self._queue)
        reads = bool(self._window.reads)  # taken by the first flush below
        while due or reads or self._ready or self._journal:
            count = min(due, self.take)
            if not await self.flush(count):
                return
            due -= count
            reads = False

    async def flush(self, count: int | None = None) -> bool:
        """Write one batch (built from the `count` oldest queued records, at most `take`,
        when none is ready): at most `batch_size` events stored and the window's journal
        entry; False when the database refused it (they stay ready for the next try)."""
        async with self._lock:
            if not self._ready and not self._journal:
                count = min(self.take, len(self._queue) if count is None else count)
                taken = [self._queue.popleft() for _ in range(count)]
                window, self._window = self._window, JournalWindow(self.builder)
                events, reads = self.builder.journal_window(taken, window)
                self._ready.extend(events)
                if reads is not None:
                    self._journal.append(orjson.dumps(reads))
            events = [self._ready.popleft() for _ in range(min(self.batch_size, len(self._ready)))]
            entry = self._journal.popleft() if self._journal else None
            if not events and entry is None:
                return True
            try:
                await self.service.in_transaction(None, lambda tx: self._write(tx, events, entry))
            except Exception:
                log.exception("audit: a batch of %d event(s) could not be written", len(events))
                self._ready.extendleft(reversed(events))
                if entry is not None:
                    self._journal.appendleft(entry)
                self._trim()
                return False
            self.written += len(events)
            return True

    async def _write(self, tx: StorageTx, events: list[dict[str, Any]], entry: bytes | None) -> int:
        """Append the window's reads to the journal and store the other events, chained."""
        if entry is not None:
            await tx.enqueue(JOURNAL, entry)
        return await self._store(tx, events) if events else 0

    async def _store(
        self, tx: StorageTx, events: list[dict[str, Any]], *, pause: bool = False
    ) -> int:
        """Store the events (version 1 each, indexed by `index_event`) and chain them;
        `pause`: let other requests run after each (merged read events are large: a
        journal's worth must not hold the event loop for its whole length).

        Written through the storage port rather than `FhirService.store`: the general
        indexer would cost more per event than a read, and AuditEvents start no triggers
        or write listeners (nothing reacts to the audit trail)."""
        stored: list[StoredResource] = []
        now = now_instant()
        for event in events:
            body = stamp(event, new_id(), 1, now)
            rec = StoredResource(
                "AuditEvent", body["id"], 1, now, False, fhirjson.dumps(body), "POST"
            )
            await tx.write(rec, index_event(body), expected_version=0)
            stored.append(rec)
            if pause:
                await asyncio.sleep(0)
        return await chain.append(tx, stored, self.key)

    async def index_journal(self) -> int:
        """Store the journaled read events as AuditEvents (see `journal`): the entries
        indexed, at most `journal_take` (0: none waited, or another process took them)."""
        storage = self.service.storage
        async with self._indexing:
            upto, seen = await journal.cursor(storage)
            entries = await storage.queue_entries(JOURNAL, upto, limit=self.journal_take)
            if not entries:
                return 0
            merger = Merger(self.max_entities)
            for _, data in entries:  # a window's reads each: other requests go on between
                merger.add(orjson.loads(data))
                await asyncio.sleep(0)
            events = merger.events()
            last = entries[-1][0]

            async def work(tx: StorageTx) -> None:
                current = await tx.read(chain.CHAIN, CURSOR)
                if (current.version if current else 0) != seen:
                    raise _Taken
                await self._store(tx, events, pause=True)
                version = seen + 1
                body = orjson.dumps({"upto": last})
                rec = StoredResource(
                    chain.CHAIN, CURSOR, version, now_instant(), False, body, "PUT"
                )
                await tx.write(rec, (), expected_version=version - 1)

            try:
                await self.service.in_transaction(None, work)
            except (_Taken, VersionConflict):
                return 0
            except Exception:
                log.exception("audit: %d journal entries could not be indexed", len(entries))
                raise
            self.written += len(events)
            await storage.queue_trim(JOURNAL, last)
            return len(entries)

    def _trim(self) -> None:
        extra = len(self._queue) - self.max_queued
        if extra > 0:
            for _ in range(extra):
                self._queue.popleft()
            self.dropped += extra
            log.error("audit: queue full, %d oldest record(s) dropped", extra)
        reads = self._window.reads
        extra = len(reads) - self.max_queued
        if extra > 0:
            del reads[:extra]
            self.dropped += extra
            log.error("audit: read journal window full, %d oldest read(s) dropped", extra)


class _Taken(Exception):
    """Another process indexed the journal entries first."""
