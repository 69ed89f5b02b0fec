"""Reference `:below` and `:above` over a hierarchy, as the references they stand for.

`Procedure?location:below=Location/42` finds procedures at Location 42 or at any location
that is part of it, at any depth; `:above` those at 42 or at a location it is part of
(https://hl7.org/fhir/R4/search.html#reference, hierarchies through a circular
reference: Location.partOf, Organization.partOf, Encounter.partOf...). Before the search
goes to storage, each `HierarchyCondition` becomes an OR of plain reference conditions on
the members of the hierarchy, found level by level with ordinary searches (below) or by
reading the parents (above), all through the access policy. A hierarchy of more than
`MAX_MEMBERS` resources is refused with a 400 (too costly) rather than searched partly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.context import AccessContext, restrict_search
from fhir_server.errors import BadRequest, Issue
from fhir_server.model import fhirjson
from fhir_server.search.conditions import (
    AnyOf,
    Condition,
    HierarchyCondition,
    ReferenceCondition,
    SearchQuery,
    map_conditions,
)
from fhir_server.search.values import ReferenceValue
from fhir_server.storage.base import StorageReader

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

MAX_MEMBERS = 1000
MAX_DEPTH = 50  # levels followed (a cycle stops earlier: each resource is visited once)


async def resolve(
    svc: FhirService, ctx: AccessContext, db: StorageReader, query: SearchQuery
) -> SearchQuery:
    """`query` with every hierarchy condition replaced by the references it stands for."""
    found: dict[HierarchyCondition, list[str]] = {}

    def collect(c: Condition) -> Condition:
        if isinstance(c, HierarchyCondition):
            found[c] = []
        return c

    map_conditions(query, collect)
    if not found:
        return query
    for condition in found:
        fetch = _above if condition.above else _below
        found[condition] = await fetch(svc, ctx, db, condition)

    def expand(c: Condition) -> Condition:
        if not isinstance(c, HierarchyCondition):
            return c
        return AnyOf(tuple(ReferenceCondition(c.param, c.target_type, id) for id in found[c]))

    return map_conditions(query, expand)


async def _below(
    svc: FhirService, ctx: AccessContext, db: StorageReader, c: HierarchyCondition
) -> list[str]:
    members, frontier = [c.target_id], [c.target_id]
    seen = set(members)
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        clause = tuple(ReferenceCondition(c.via, c.target_type, id) for id in frontier)
        query = SearchQuery((c.target_type,), (clause,), count=MAX_MEMBERS + 1, total="none")
        page = await db.search(restrict_search(svc.policy, ctx, query))
        frontier = [r.id for r in page.resources if r.id not in seen and svc.policy.visible(ctx, r)]
        seen.update(frontier)
        members.extend(frontier)
        if len(members) > MAX_MEMBERS:
            message = (
                f"{c.target_type}/{c.target_id} has more than {MAX_MEMBERS} resources "
                "below it: search a smaller part of the hierarchy"
            )
            raise BadRequest(
                message, issues=[Issue(message, "too-costly", "error", (f"{c.param}:below",))]
            )
    return members


async def _above(
    svc: FhirService, ctx: AccessContext, db: StorageReader, c: HierarchyCondition
) -> list[str]:
    members, current = [c.target_id], c.target_id
    for _ in range(MAX_DEPTH):
        rec = await db.read(c.target_type, current)
        if rec is None or rec.deleted or not svc.policy.visible(ctx, rec):
            break
        parents = [
            v.target_id
            for v in svc.indexer.values_of(fhirjson.loads(rec.data), {c.via})
            if isinstance(v, ReferenceValue)
            and v.target_type == c.target_type
            and v.target_id
            and v.target_id not in members
        ]
        if not parents:
            break
        current = parents[0]  # a part-of is 0..1: one parent per level
        members.append(current)
    return members
