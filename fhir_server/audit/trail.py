"""The audit trail of one server process: a queue filled by the request path, written in
batches after the responses.

`record(exchange)` appends to an in-memory queue (no I/O, no JSON: microseconds). A task of
this process takes what is queued every `flush_seconds` (and as soon as `batch_size`
records wait), builds the AuditEvents and stores them with their chain record in one
transaction through the service (`chain.append`). `close()` flushes what is left: a clean
shutdown (SIGTERM) loses nothing; a crash (SIGKILL, power) loses at most the records of
the last `flush_seconds`. Should the database refuse a batch, its records go back to the
queue (at most `max_queued` are kept; beyond, the oldest are dropped and counted in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from fhir_server.audit import chain
from fhir_server.audit.events import EventBuilder
from fhir_server.audit.index import index_event
from fhir_server.audit.records import Exchange
from fhir_server.interactions.common import new_id, now_instant, stamp
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
    ) -> None:
        self.service = service
        self.builder = builder
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.max_queued = max_queued
        self.key = key
        self._queue: deque[Exchange] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.dropped = 0
        self.written = 0

    def record(self, exchange: Exchange) -> None:
        """Queue one exchange for the next batch (called on the request path)."""
        self._queue.append(exchange)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    async def start(self) -> AuditTrail:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def close(self) -> None:
        """Stop the timer and write everything still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue:
            if not await self.flush():
                log.error("audit: %d record(s) could not be written at shutdown", len(self._queue))
                break

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            while self._queue:
                if not await self.flush():
                    break

    async def flush(self) -> bool:
        """Write one batch of what is queued; False when the database refused it."""
        async with self._lock:
            taken = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
            if not taken:
                return True
            try:
                events = [self._build(ex) for ex in taken]
                await self.service.in_transaction(None, lambda tx: self._write(tx, events))
            except Exception:
                log.exception("audit: a batch of %d event(s) could not be written", len(taken))
                self._queue.extendleft(reversed(taken))
                self._trim()
                return False
            self.written += len(taken)
            return True

    def _build(self, ex: Exchange) -> dict[str, Any]:
        """The event of `ex`; should building it fail (a bug), a bare event that still
        says who, when and how it ended, rather than a batch that never gets written."""
        try:
            return self.builder.build(ex)
        except Exception:
            log.exception("audit: the event of a %s %s exchange was built bare", ex.kind, ex.method)
            return self.builder.bare(ex)

    async def _write(self, tx: StorageTx, events: list[dict[str, Any]]) -> int:
        """Store the events (version 1 each, indexed by `index_event`) and chain them.

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
        return await chain.append(tx, stored, self.key)

    def _trim(self) -> None:
        extra = len(self._queue) - self.max_queued
        if extra > 0:
            for _ in range(extra):
                self._queue.popleft()
            self.dropped += extra
            log.error("audit: queue full, %d oldest record(s) dropped", extra)
