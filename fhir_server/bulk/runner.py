"""The leader's part: run queued export jobs, one at a time, and remove expired ones.

A job goes type by type. A type's NDJSON is written into files of at most `file_bytes`
(a line is never split), each put whole into the exports byte store and recorded in the
job; deletions (`_since` exports) are spooled to a temporary file and written after the
type. After each type the job is saved. A job found `running` when a leader starts was
cut short: the files of its unfinished type are removed and that type starts over (the
versions at transactionTime are the same the second time). After `MAX_ATTEMPTS` starts the
job fails, so its status never stays 202 for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import IO, TYPE_CHECKING

import orjson

from fhir_server.bulk.jobs import Job, Jobs, OutputFile
from fhir_server.bulk.scan import Selection, TransformFactory
from fhir_server.errors import Issue, operation_outcome
from fhir_server.storage.base import StoredResource
from fhir_server.storage.blobs import BlobStore
from fhir_server.storage.leadership import running

if TYPE_CHECKING:
    from fhir_server.bulk.plugin import Options
    from fhir_server.interactions.service import FhirService

log = logging.getLogger("fhir_server.bulk")

MAX_ATTEMPTS = 3
CHECK_EVERY = 1.0  # seconds between looks for a cancellation and progress saves
MAX_ERRORS = 1000


class Cancelled(Exception):
    """The job was cancelled (DELETE) or removed while it ran."""


class Runner:
    def __init__(
        self,
        svc: FhirService,
        jobs: Jobs,
        files: BlobStore,
        options: Options,
        transforms: dict[str, TransformFactory],
    ) -> None:
        self.svc, self.jobs, self.files = svc, jobs, files
        self.options = options
        self.transforms = transforms
        self._checked = 0.0

    def duty(self) -> AbstractAsyncContextManager[None]:
        return running(self._forever)

    async def _forever(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bulk export: a round of the job runner failed")
            await asyncio.sleep(self.options.poll_seconds)

    async def tick(self) -> None:
        """One round: remove cancelled and expired jobs, run those waiting."""
        for id in await self.jobs.ids():
            job = await self.jobs.load(id)
            if job is None:
                continue
            if await self.jobs.cancelled(id) or self.expired(job):
                await self.discard(job)
            elif job.status in ("queued", "running"):
                await self.run(job)

    def expired(self, job: Job) -> bool:
        finished = job.finished
        return finished is not None and time.time() > finished + self.options.retention_seconds

    async def discard(self, job: Job) -> None:
        """Remove the job's files (those no other job shares) and the job."""
        await self._remove(job, job.files)
        await self.jobs.forget(job.id)

    async def _remove(self, job: Job, files: list[OutputFile]) -> None:
        shared: set[str] = set()  # files are named by content: two jobs may hold the same
        for other_id in await self.jobs.ids():
            other = await self.jobs.load(other_id) if other_id != job.id else None
            if other is not None:
                shared.update(f.sha256 for f in other.files)
        for file in files:
            if file.sha256 not in shared:
                await self.files.remove(file.sha256)

    async def run(self, job: Job) -> None:
        job.attempts += 1
        if job.attempts > MAX_ATTEMPTS:
            await self._fail(job, f"the export was interrupted {MAX_ATTEMPTS} times")
            return
        unfinished = [f for f in job.files if f.type not in job.done_types and f.kind != "error"]
        if unfinished:
            log.info("bulk export %s resumes after %s", job.id, ", ".join(job.done_types) or "-")
            job.files = [f for f in job.files if f not in unfinished]
            await self._remove(job, unfinished)
        job.status = "running"
        await self.jobs.save(job)
        try:
            await self._settle(job)
            for name in job.types:
                if name not in job.done_types:
                    await self._export_type(job, name)
                    job.done_types.append(name)
                    await self._save(job)
            await self._write_errors(job)
        except Cancelled:
            await self.discard(job)
            return
        except asyncio.CancelledError:  # the lease was lost: the next leader resumes
            raise
        except Exception as error:
            log.exception("bulk export %s failed", job.id)
            await self._fail(job, f"the export failed ({type(error).__name__})")
            return
        job.status, job.finished = "done", time.time()
        await self._save(job)

    async def _fail(self, job: Job, why: str) -> None:
        job.status, job.finished, job.failure = "failed", time.time(), why
        await self.jobs.save(job)

    async def _settle(self, job: Job) -> None:
        """Wait until transactionTime is `settle_seconds` past: a write stamped just before
        it (a transaction takes its timestamp before it commits) has committed by then."""
        from datetime import UTC, datetime

        moment = datetime.strptime(job.transaction_time, "%Y-%m-%dT%H:%M:%S.%fZ")
        wait = moment.replace(tzinfo=UTC).timestamp() + self.options.settle_seconds - time.time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _save(self, job: Job) -> None:
        """Save progress, unless the job was cancelled or removed meanwhile."""
        if await self.jobs.cancelled(job.id) or await self.jobs.load(job.id) is None:
            raise Cancelled
        await self.jobs.save(job)

    async def _check(self, job: Job) -> None:
        now = time.monotonic()
        if now - self._checked >= CHECK_EVERY:
            self._checked = now
            await self._save(job)

    async def _export_type(self, job: Job, type: str) -> None:
        make = self.transforms.get(job.transform) if job.transform else None
        transform = make(job.id) if make is not None else None
        selection = Selection(self.svc, job, transform)
        with tempfile.TemporaryFile() as spool:
            deleted = _Spool(spool)
            lines = selection.resources(type, deleted.add)
            await self._write_files(job, type, "output", lines)
            await self._write_files(job, type, "deleted", deleted.lines())
        room = MAX_ERRORS - len(job.errors)
        job.errors.extend(selection.errors[: max(room, 0)])

    async def _write_files(
        self, job: Job, type: str, kind: str, lines: AsyncIterator[bytes]
    ) -> None:
        limit = self.options.file_bytes
        pending = await anext(lines, None)
        while pending is not None:
            count = 0

            async def chunks() -> AsyncIterator[bytes]:
                nonlocal pending, count
                size = 0
                while pending is not None and (size == 0 or size + len(pending) <= limit):
                    yield pending
                    size += len(pending)
                    count += 1
                    if kind == "output":
                        job.exported += 1
                        if count % 200 == 0:
                            await self._check(job)
                    pending = await anext(lines, None)

            ref = await self.files.put(chunks())
            job.files.append(OutputFile(kind, type, ref.sha256, count, ref.size))
            await self._check(job)

    async def _write_errors(self, job: Job) -> None:
        if not job.errors or any(f.kind == "error" for f in job.files):
            return

        async def lines() -> AsyncIterator[bytes]:
            for text in job.errors:
                yield orjson.dumps(operation_outcome([Issue(text, "processing")])) + b"\n"

        await self._write_files(job, "OperationOutcome", "error", lines())


class _Spool:
    """Deletions of one type as NDJSON Bundles (Bulk Data: one transaction Bundle per line
    with a DELETE entry), in a temporary file until the type's resources are written."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.count = 0

    def add(self, rec: StoredResource) -> None:
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "DELETE", "url": f"{rec.type}/{rec.id}"}}],
        }
        self.file.write(orjson.dumps(bundle) + b"\n")
        self.count += 1

    async def lines(self) -> AsyncIterator[bytes]:
        self.file.seek(0)
        for _ in range(self.count):
            yield self.file.readline()
        with contextlib.suppress(OSError):
            self.file.truncate(0)
