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
the end inside the request; for millions of resources the CLI (`fhir-server reindex`,
with a progress bar and a resumable checkpoint file) is the better tool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from fhir_server.errors import BadRequest
from fhir_server.interactions.operations import Operation, OperationCall
from fhir_server.model import fhirjson
from fhir_server.storage.base import StoredResource

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

BATCH = 200


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


async def reindex(
    svc: FhirService,
    types: Iterable[str],
    checkpoint: Checkpoint | None = None,
    *,
    save: Callable[[Checkpoint], None] = lambda c: None,
    progress: Progress = lambda t, n: None,
) -> Checkpoint:
    """Re-index every current resource of `types`, resuming from `checkpoint`."""
    state = checkpoint or Checkpoint()
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
            if len(batch) >= BATCH:
                await _batch(svc, state, batch, save, progress)
                batch = []
        if batch:
            await _batch(svc, state, batch, save, progress)
        state.done.append(type)
        state.type = state.last_id = None
        save(state)
    return state


async def _batch(
    svc: FhirService,
    state: Checkpoint,
    batch: list[StoredResource],
    save: Callable[[Checkpoint], None],
    progress: Progress,
) -> None:
    type = batch[0].type
    done = 0
    async with svc.storage.transaction() as tx:
        for rec in batch:
            index = svc.indexer.extract(fhirjson.loads(rec.data))
            done += await tx.reindex(rec.type, rec.id, rec.version, index)
    state.counts[type] = state.counts.get(type, 0) + done
    state.last_id = batch[-1].id
    save(state)
    progress(type, len(batch))


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
        state = await reindex(svc, types)
        parts = [
            {
                "name": "count",
                "part": [
                    {"name": "type", "valueCode": t},
                    {"name": "reindexed", "valueInteger": n},
                ],
            }
            for t, n in sorted(state.counts.items())
        ]
        total = sum(state.counts.values())
        return {
            "resourceType": "Parameters",
            "parameter": [{"name": "total", "valueInteger": total}, *parts],
        }

    return Operation("reindex", run, frozenset({"system", "type"}), affects_state=True)
