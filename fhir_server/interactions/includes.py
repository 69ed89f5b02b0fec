"""Fetching what `_include` and `_revinclude` add to a page of search results.

https://hl7.org/fhir/R4/search.html#include -- included resources are entries with
search mode `include`, each once, and never a resource that is already a match. The
references a page holds are read from the resources themselves with the parameters'
FHIRPath expressions (the same plans that index them), then fetched by `_id`, one search
per target type; `_revinclude` is one search per source type over the page's references.
Both are searches through the access policy: what the caller may not see is not included.

`:iterate` repeats its include over what the previous round added, for at most
`MAX_ROUNDS` rounds. At most `MAX_INCLUDED` resources are included per page; when more
would be, the Bundle says so in an OperationOutcome entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from fhir_server.context import AccessContext, restrict_search
from fhir_server.errors import Forbidden
from fhir_server.model import fhirjson
from fhir_server.search.conditions import (
    Condition,
    IdCondition,
    ReferenceCondition,
    SearchQuery,
    UriCondition,
)
from fhir_server.search.includes import Include
from fhir_server.search.values import ReferenceValue
from fhir_server.storage.base import StorageReader, StoredResource

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

MAX_INCLUDED = 1000
MAX_ROUNDS = 4
_CHUNK = 500  # references per revinclude query

Key = tuple[str, str]  # (type, id)
T = TypeVar("T")


@dataclass(slots=True)
class Included:
    resources: list[StoredResource] = field(default_factory=list)
    truncated: bool = False


async def fetch_included(
    svc: FhirService,
    ctx: AccessContext,
    db: StorageReader,
    matches: Sequence[StoredResource],
    includes: Sequence[Include],
) -> Included:
    """The resources `includes` add to the page `matches`, in the order they were found."""
    out = Included()
    if not includes or not matches:
        return out
    seen: set[Key] = {(r.type, r.id) for r in matches}
    frontier: list[StoredResource] = list(matches)
    for round in range(MAX_ROUNDS):
        active = [i for i in includes if round == 0 or i.iterate]
        if not active or not frontier:
            break
        added: list[StoredResource] = []
        for include in active:
            room = MAX_INCLUDED - len(out.resources) - len(added)
            if room <= 0:
                out.truncated = True
                break
            fetch = _reverse if include.reverse else _forward
            found = await fetch(svc, ctx, db, frontier, include, seen, room + 1)
            if len(found) > room:
                out.truncated, found = True, found[:room]
            for rec in found:
                seen.add((rec.type, rec.id))
            added.extend(found)
        out.resources.extend(added)
        frontier = added
    return out


async def _forward(
    svc: FhirService,
    ctx: AccessContext,
    db: StorageReader,
    frontier: Sequence[StoredResource],
    include: Include,
    seen: set[Key],
    limit: int,
) -> list[StoredResource]:
    wanted: dict[str, dict[str, None]] = {}  # type -> ids, in the order referenced
    canonical: dict[str, dict[str, None]] = {}  # type -> canonical urls
    for rec in frontier:
        codes = include.reference_params(svc.registry, rec.type)
        if not codes:
            continue
        for value in svc.indexer.values_of(fhirjson.loads(rec.data), codes):
            if not isinstance(value, ReferenceValue):
                continue
            type, id = value.target_type, value.target_id
            if value.url and svc.base_url and value.url.startswith(f"{svc.base_url}/"):
                type, _, id = value.url[len(svc.base_url) + 1 :].partition("/")
            if type and id:
                if include.target in (None, type) and (type, id) not in seen:
                    wanted.setdefault(type, {})[id] = None
            elif value.url:  # a canonical: the resources whose `url` it is
                for target in _canonical_targets(svc, rec.type, value.param, include.target):
                    canonical.setdefault(target, {})[value.url] = None
    found: list[StoredResource] = []
    for type, ids in wanted.items():
        for chunk in _chunks(list(ids), _CHUNK):
            found.extend(
                await _search(svc, ctx, db, type, (IdCondition(tuple(chunk)),), limit - len(found))
            )
    for type, urls in canonical.items():
        for chunk in _chunks(list(urls), _CHUNK):
            found.extend(
                await _search(
                    svc,
                    ctx,
                    db,
                    type,
                    tuple(UriCondition("url", url) for url in chunk),
                    limit - len(found),
                )
            )
    unique = {(r.type, r.id): r for r in found if (r.type, r.id) not in seen}
    return list(unique.values())[:limit]


def _canonical_targets(svc: FhirService, type: str, code: str, wanted: str | None) -> list[str]:
    """The target types of a canonical reference parameter that have a `url` parameter."""
    param = svc.registry.param(type, code)
    targets = svc.registry.targets(param, type) if param is not None else frozenset()
    return sorted(
        t
        for t in targets
        if wanted in (None, t)
        and (p := svc.registry.param(t, "url")) is not None
        and p.type == "uri"
    )


async def _reverse(
    svc: FhirService,
    ctx: AccessContext,
    db: StorageReader,
    frontier: Sequence[StoredResource],
    include: Include,
    seen: set[Key],
    limit: int,
) -> list[StoredResource]:
    source = include.source
    codes = include.reference_params(svc.registry, source)
    conditions: list[Condition] = []
    for code in codes:
        param = svc.registry.param(source, code)
        targets = svc.registry.targets(param, source) if param else frozenset()
        conditions.extend(
            ReferenceCondition(code, rec.type, rec.id)
            for rec in frontier
            if include.target in (None, rec.type) and (not targets or rec.type in targets)
        )
    found: dict[Key, StoredResource] = {}
    for chunk in _chunks(conditions, _CHUNK):
        # matches and earlier includes come back too: ask for enough to fill `limit`
        batch = await _search(svc, ctx, db, source, tuple(chunk), limit + len(seen))
        for rec in batch:
            if (rec.type, rec.id) not in seen:
                found.setdefault((rec.type, rec.id), rec)
        if len(found) >= limit:
            break
    return list(found.values())[:limit]


async def _search(
    svc: FhirService,
    ctx: AccessContext,
    db: StorageReader,
    type: str,
    clause: tuple[Condition, ...],
    count: int,
) -> list[StoredResource]:
    """Resources of `type` matching any of `clause`, as far as the caller may see them."""
    if count <= 0:
        return []
    try:
        svc.policy.check(ctx, "search", type)
    except Forbidden:
        return []
    query = restrict_search(
        svc.policy, ctx, SearchQuery((type,), (clause,), count=count, total="none")
    )
    page = await db.search(query)
    return [r for r in page.resources if svc.policy.visible(ctx, r)]


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
