"""What one export job writes of one resource type: consistent to its transactionTime.

`at_time(storage, type, T)` gives, for every resource of `type` that existed at instant T,
the version current at T (a deletion when it was deleted then), each resource once, even
while writes go on: one pass over `Storage.iter_latest` (a stable order, deletions
included) takes the versions last written at or before T as they are; a resource written
after T (its latest version is newer) is looked up in its history at T afterwards. So
nothing written after T leaks in, and nothing current at T is missed, whether it was
updated or deleted meanwhile. Only the ids of resources written during the export are held
in memory; everything else streams.

`Selection` applies the request to those versions: `_since`, the cohort (patient-level and
Group exports: a resource is in when one of its Patient-compartment references names a
patient of the cohort), the caller's access policy (`policy.visible`, as for every read),
`_typeFilter` (each filter is the server's own search, run on a batch of ids at a time, so
it supports what search supports; several filters of one type are OR'ed), then the named
transform and `_elements`. A `_typeFilter` matches the current search index: a resource
changed after T is exported as it was at T if its current version matches the filter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fhir_server.context import restrict_search
from fhir_server.interactions import hierarchies
from fhir_server.model import fhirjson
from fhir_server.model.summary import apply_elements
from fhir_server.search.compartments import membership_params
from fhir_server.search.parse import parse_search
from fhir_server.search.values import ReferenceValue
from fhir_server.storage.base import HistoryQuery, Storage, StoredResource

if TYPE_CHECKING:
    from fhir_server.bulk.jobs import Job
    from fhir_server.interactions.service import FhirService

Transform = Callable[[dict[str, Any]], dict[str, Any] | None]
"""A resource in, the resource to export out (a new dict), or None to leave it out."""
TransformFactory = Callable[[str], Transform]
"""Makes a job's `Transform` from the job id (each time a type of that job is exported), so
per-export state (e.g. a pseudonym key) can be derived from the id and stay the same
across the job's types and a resume after a restart."""
FILTER_BATCH = 100  # ids per `_typeFilter` search
COMPARTMENT = "Patient"


async def at_time(storage: Storage, type: str, moment: str) -> AsyncIterator[StoredResource]:
    """The version current at `moment` of every resource of `type` that existed then."""
    later: list[str] = []
    async for rec in storage.iter_latest(type):
        if rec.last_updated <= moment:
            yield rec
        else:
            later.append(rec.id)
    for id in later:
        page = await storage.history(HistoryQuery(type, id, at=moment, count=1))
        if page.resources:
            yield page.resources[0]


def typefilter_params(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query, keep_blank_values=True)


class Selection:
    """The request of `job` applied to the versions `at_time` gives (see the module)."""

    def __init__(self, svc: FhirService, job: Job, transform: Transform | None) -> None:
        self.svc = svc
        self.job = job
        self.ctx = job.context()
        self.cohort = None if job.patients is None else frozenset(job.patients)
        self.patient_level = job.level != "system"
        self.transform = transform
        self.errors: list[str] = []

    async def resources(
        self, type: str, deleted: Callable[[StoredResource], None]
    ) -> AsyncIterator[bytes]:
        """NDJSON lines of `type`; deletions since `_since` go to `deleted`."""
        batch: list[StoredResource] = []
        since = self.job.since
        async for rec in at_time(self.svc.storage, type, self.job.transaction_time):
            if since is not None and rec.last_updated <= since:
                continue
            if rec.deleted:
                if since is not None and await self._deletion_visible(rec):
                    deleted(rec)
                continue
            if not self._visible(rec):
                continue
            batch.append(rec)
            if len(batch) >= FILTER_BATCH:
                for line in await self._lines(type, batch):
                    yield line
                batch = []
        if batch:
            for line in await self._lines(type, batch):
                yield line

    def _visible(self, rec: StoredResource) -> bool:
        if not self.svc.policy.visible(self.ctx, rec):
            return False
        return not self.patient_level or self._in_cohort(rec.type, fhirjson.loads(rec.data))

    async def _deletion_visible(self, rec: StoredResource) -> bool:
        """A deletion is reported to whoever could see the version it deleted."""
        if rec.version <= 1:
            return False
        before = await self.svc.storage.vread(rec.type, rec.id, rec.version - 1)
        return before is not None and not before.deleted and self._visible(before)

    def _in_cohort(self, type: str, resource: dict[str, Any]) -> bool:
        if type == COMPARTMENT:
            return self.cohort is None or resource.get("id") in self.cohort
        codes = membership_params(self.svc.registry, COMPARTMENT, type)
        return any(
            isinstance(v, ReferenceValue)
            and v.target_type == COMPARTMENT
            and (self.cohort is None or v.target_id in self.cohort)
            for v in self.svc.indexer.values_of(resource, codes)
        )

    async def _lines(self, type: str, batch: list[StoredResource]) -> list[bytes]:
        out = []
        present = self.svc.disclosure.present  # identifiers masked for the caller's role
        for rec in await self._filtered(type, batch):
            line = self._render(present(self.ctx, rec))
            if line is not None:
                out.append(line + b"\n")
        return out

    async def _filtered(self, type: str, batch: list[StoredResource]) -> list[StoredResource]:
        filters = self.job.type_filters.get(type)
        if not filters:
            return batch
        ids = ",".join(rec.id for rec in batch)
        hits: set[str] = set()
        for query in filters:
            params = [*typefilter_params(query), ("_id", ids)]
            parsed = parse_search(
                self.svc.registry, (type,), params, strict=True, codes=self.svc.codes
            )
            found = await hierarchies.resolve(self.svc, self.ctx, self.svc.storage, parsed.query)
            found = restrict_search(self.svc.policy, self.ctx, found)
            page = await self.svc.storage.search(
                replace(found, count=len(batch), offset=0, total="none")
            )
            hits.update(rec.id for rec in page.resources)
        return [rec for rec in batch if rec.id in hits]

    def _render(self, rec: StoredResource) -> bytes | None:
        if self.transform is None and not self.job.elements:
            return rec.data
        resource: dict[str, Any] | None = fhirjson.loads(rec.data)
        if self.transform is not None and resource is not None:
            try:
                resource = self.transform(resource)
            except Exception as error:  # the reason, never the content (it may be PHI)
                self.errors.append(
                    f"{rec.type}/{rec.id}: the transform {self.job.transform} failed "
                    f"({type(error).__name__}); the resource was left out"
                )
                return None
        if resource is None:
            return None
        if self.job.elements:
            resource = apply_elements(resource, self.job.elements)
        return fhirjson.dumps(resource)
