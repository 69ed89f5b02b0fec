"""FHIR create interaction, plain and conditional.

https://hl7.org/fhir/R4/http.html#create -- "The server SHALL populate the id, meta.versionId
and meta.lastUpdated with the new correct values"; an id in the body is ignored.
https://hl7.org/fhir/R4/http.html#ccreate -- with If-None-Exist: no match creates, one
match returns it (200), several fail with 412. Matching and creating happen in one
transaction that claims the criteria, so two racing requests never make two resources.
A query string on the create (`POST Patient?identifier=x`) is refused with a 400: the
criteria of a conditional create go in If-None-Exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.errors import BadRequest, PreconditionFailed
from fhir_server.interactions.common import criteria_key, new_id, query_criteria
from fhir_server.interactions.request import Request, Response

if TYPE_CHECKING:
    from fhir_server.interactions.routes import RouteMatch
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx


async def handle(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    assert m.type and req.context
    ctx, type = req.context, m.type
    svc.policy.check(ctx, "create", type)
    _refuse_query(req, type)
    resource = svc.resource_from_body(req, type)
    svc.policy.check_resource(ctx, "create", type, resource)
    criteria = req.header("if-none-exist")
    rid = req.assigned_id or new_id()

    async def work(db: StorageTx) -> Response:
        if criteria:
            await db.lock(criteria_key(type, criteria))
            found = await svc.find(db, ctx, type, criteria)
            if len(found) > 1:
                raise PreconditionFailed(f"If-None-Exist '{criteria}' matches more than one {type}")
            if found:
                return svc.resource_response(req, found[0], 200)
        rec = await svc.store(db, type, rid, resource, current=None, method="POST")
        return svc.resource_response(req, rec, 201)

    return await svc.in_transaction(tx, work)


def _refuse_query(req: Request, type: str) -> None:
    """`POST Type?identifier=x` is no FHIR interaction: some clients mean a conditional create
    by it, and creating anyway would make the duplicate they meant to avoid. Refused under
    any `Prefer: handling`: an ignored parameter here changes what is written."""
    names = list(dict.fromkeys(name for name, _ in query_criteria(req)))
    if names:
        raise BadRequest(
            f"POST {type} takes no search parameters (got {', '.join(names)}): for a conditional "
            f"create send the criteria in the If-None-Exist header; to search, POST to "
            f"{type}/_search",
            expression=tuple(names),
        )
