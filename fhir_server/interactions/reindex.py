"""`$reindex`: recompute the search index of stored resources with the current parameters.

After a custom SearchParameter becomes active, new writes are indexed for it at once;
resources written before are brought up to date here. Each resource's current version is
re-extracted and its index values replaced in place: no new version, no change to
`meta`, history or ETags. A resource written meanwhile is skipped (that write indexed it).

The work goes type by type in the storage's insertion order, in batches of `BATCH`, one
transaction per batch. After every batch a `Checkpoint` (the types done, the type under
way and the last id re-indexed) is handed to `save`, so a run that stops (a crash, a
Ctrl-C) resumes from there; re-indexing twice is harmless, so resuming never loses work.

The operation answers `POST [base]/$reindex` (every type, or the `type` parameters) and
`POST [base]/[type]/$reindex`, with a Parameters resource of counts per type. It runs to
the end inside the request, unless the `background` parameter is true: then it queues a
job and answers at once. The job (one at a time; its checkpoint saved in the storage after
every batch) runs on the leader process (`job_duty`, see `storage.leadership`): if the
leader dies, the next one resumes it from its last checkpoint. `$reindex-status` tells how
far it got. For millions of resources the CLI (`fhir-server reindex`, with a progress bar
and a resumable checkpoint file) is another way.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from fhir_server.errors import BadRequest
from fhir_server.interactions.operations import Operation, OperationCall
from fhir_server.model import fhirjson
from fhir_server.storage.base import StoredResource
from fhir_server.storage.leadership import running

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

log = logging.getLogger("fhir_server")

BATCH = 200
JOB = "job:reindex"  # the saved state of the background job
JOB_BATCH = 50  # smaller batches: the leader keeps serving requests between them
JOB_POLL = 1.0  # seconds between looks for a queued job


@dataclass
class Checkpoint:
    """How far a re-index got: finished types, and the last id done in the current one."""

    done: list[str] = field(default_factory=list)
    type: str | None = None
    last_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(
            list(data.get("done", [])),
            data.get("type"),
            data.get("last_id"),
            dict(data.get("counts", {})),
        )


Progress = Callable[[str, int], None]  # (type, resources re-indexed in the last batch)
Save = Callable[[Checkpoint], Awaitable[None] | None]


async def reindex(
    svc: FhirService,
    types: Iterable[str],
    checkpoint: Checkpoint | None = None,
    *,
    save: Save = lambda c: None,
    progress: Progress = lambda t, n: None,
    batch_size: int | None = None,
) -> Checkpoint:
    """Re-index every current resource of `types`, resuming from `checkpoint`."""
    state = checkpoint or Checkpoint()
    size = batch_size or BATCH
    for type in types:
        if type in state.done:
            continue
        resume = state.last_id if state.type == type else None
        if resume is not None:
            current = await svc.storage.read(type, resume)
            if current is None or current.deleted:  # cannot find the place: start the type over
                resume = None
        state.type, state.last_id = type, resume
        batch: list[StoredResource] = []
        async for rec in svc.storage.iter_current(type):
            if resume is not None:
                resume = None if rec.id == resume else resume
                continue
            batch.append(rec)
            if len(batch) >= size:
                await _batch(svc, state, batch, save, progress)
                batch = []
        if batch:
            await _batch(svc, state, batch, save, progress)
        state.done.append(type)
        state.type = state.last_id = None
        await _saved(save(state))
    return state


async def _saved(result: Awaitable[None] | None) -> None:
    if inspect.isawaitable(result):
        await result


async def _batch(
    svc: FhirService,
    state: Checkpoint,
    batch: list[StoredResource],
    save: Save,
    progress: Progress,
) -> None:
    type = batch[0].type
    done = 0
    await svc.shared.check()  # the parameters other processes added count (a job has no request)
    async with svc.storage.transaction() as tx:
        for rec in batch:
            index = svc.indexer.extract(fhirjson.loads(rec.data))
            done += await tx.reindex(rec.type, rec.id, rec.version, index)
    state.counts[type] = state.counts.get(type, 0) + done
    state.last_id = batch[-1].id
    await _saved(save(state))
    progress(type, len(batch))


@dataclass
class Job:
    """The background re-index: its types, how far it got, and whether it is done."""

    types: list[str]
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    done: bool = False
    runs: list[int] = field(default_factory=list)  # resources done when each run began

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "types": self.types,
                "checkpoint": self.checkpoint.to_json(),
                "done": self.done,
                "runs": self.runs,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Job:
        found = orjson.loads(data)
        return cls(
            list(found["types"]),
            Checkpoint.from_json(found["checkpoint"]),
            bool(found["done"]),
            list(found.get("runs", [])),
        )


async def load_job(svc: FhirService) -> Job | None:
    saved = await svc.storage.load_state(JOB)
    return Job.from_json(saved) if saved is not None else None


async def queue_job(svc: FhirService, types: list[str]) -> Job:
    """Queue a background re-index of `types`, unless one is not finished yet (that one)."""
    current = await load_job(svc)
    if current is not None and not current.done:
        return current
    job = Job(types)
    await svc.storage.save_state(JOB, job.to_json())
    return job


def job_duty(svc: FhirService) -> Callable[[], AbstractAsyncContextManager[None]]:
    """The leader's part: run the queued job, resuming from its checkpoint."""

    return lambda: running(lambda: _jobs_forever(svc))


async def _jobs_forever(svc: FhirService) -> None:
    while True:
        try:
            job = await load_job(svc)
            if job is not None and not job.done:
                await run_job(svc, job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the background re-index failed; it resumes from its checkpoint")
        await asyncio.sleep(JOB_POLL)


async def run_job(svc: FhirService, job: Job) -> Job:
    """Run `job` to the end from its checkpoint, saving it after every batch."""
    if job.runs:
        log.info("resuming the background re-index after %s", job.checkpoint.counts)
    job.runs.append(sum(job.checkpoint.counts.values()))

    async def save(state: Checkpoint) -> None:
        job.checkpoint = state
        await svc.storage.save_state(JOB, job.to_json())

    await save(job.checkpoint)

    types = [t for t in job.types if t in svc.resource_types]
    await reindex(svc, types, job.checkpoint, save=save, batch_size=JOB_BATCH)
    job.done = True
    await svc.storage.save_state(JOB, job.to_json())
    return job


def _counts(state: Checkpoint) -> list[dict[str, Any]]:
    return [
        {
            "name": "count",
            "part": [
                {"name": "type", "valueCode": t},
                {"name": "reindexed", "valueInteger": n},
            ],
        }
        for t, n in sorted(state.counts.items())
    ]


def _job_status(job: Job | None) -> dict[str, Any]:
    if job is None:
        return {
            "resourceType": "Parameters",
            "parameter": [{"name": "status", "valueCode": "none"}],
        }
    status = "done" if job.done else "running" if job.checkpoint.counts else "queued"
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "status", "valueCode": status},
            {"name": "total", "valueInteger": sum(job.checkpoint.counts.values())},
            *_counts(job.checkpoint),
        ],
    }


def reindex_operation() -> Operation:
    async def run(svc: FhirService, call: OperationCall) -> dict[str, Any]:
        if call.type is not None:
            types = [call.type]
        else:
            types = call.params.strings("type") or sorted(svc.resource_types)
            unknown = [t for t in types if t not in svc.resource_types]
            if unknown:
                raise BadRequest(
                    f"Unknown resource type(s) for $reindex: {', '.join(unknown)}",
                    expression=("type",),
                )
        if call.params.boolean("background"):
            return _job_status(await queue_job(svc, types))
        state = await reindex(svc, types)
        total = sum(state.counts.values())
        return {
            "resourceType": "Parameters",
            "parameter": [{"name": "total", "valueInteger": total}, *_counts(state)],
        }

    return Operation("reindex", run, frozenset({"system", "type"}), affects_state=True)


def reindex_status_operation() -> Operation:
    """`$reindex-status`: how far the background re-index got (status, counts per type)."""

    async def run(svc: FhirService, call: OperationCall) -> dict[str, Any]:
        return _job_status(await load_job(svc))

    return Operation("reindex-status", run, frozenset({"system"}))
