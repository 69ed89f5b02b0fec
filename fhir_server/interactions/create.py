"""FHIR create interaction, plain and conditional.

https://hl7.org/fhir/R4/http.html#create -- "The server SHALL populate the id, meta.versionId
and meta.lastUpdated with the new correct values"; an id in the body is ignored.
https://hl7.org/fhir/R4/http.html#ccreate -- with If-None-Exist: no match creates, one
match returns it (200), several fail with 412. Matching and creating happen in one
transaction that claims the criteria, so two racing requests never make two resources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.errors import PreconditionFailed
from fhir_server.interactions.common import criteria_key, new_id
from fhir_server.interactions.request import Request, Response

if TYPE_CHECKING:
    from fhir_server.interactions.routes import RouteMatch
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx


async def handle(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    assert m.type and req.context
    ctx, type = req.context, m.type
    svc.policy.check(ctx, "create", type)
    resource = svc.resource_from_body(req, type)
    svc.policy.check_resource(ctx, "create", type, resource)
    criteria = req.header("if-none-exist")
    rid = req.assigned_id or new_id()

    async def work(db: StorageTx) -> Response:
        if criteria:
            await db.lock(criteria_key(type, criteria))
            found = await svc.find(db, ctx, type, criteria)
            if len(found) > 1:
                raise PreconditionFailed(
                    f"If-None-Exist '{criteria}' matches more than one {type}"
                )
            if found:
                return svc.resource_response(req, found[0], 200)
        rec = await svc.store(db, type, rid, resource, current=None, method="POST")
        return svc.resource_response(req, rec, 201)

    return await svc.in_transaction(tx, work)
