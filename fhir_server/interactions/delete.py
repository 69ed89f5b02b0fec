"""FHIR delete interaction, plain and conditional.

https://hl7.org/fhir/R4/http.html#delete -- "Upon successful deletion, or if the resource
does not exist at all, the server should return either a 200 OK if the response contains
a payload, or a 204 No Content". Deletion writes a versioned tombstone: read then answers
410 Gone and history keeps every version.
https://hl7.org/fhir/R4/http.html#3.1.0.7.1 -- conditional delete; this server deletes a
single match and answers 412 when the criteria match several (conditionalDelete: single).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.errors import Gone, NotFound, PreconditionFailed
from fhir_server.interactions.common import etag, query_criteria
from fhir_server.interactions.request import Request, Response
from fhir_server.model import fhirjson

if TYPE_CHECKING:
    from fhir_server.interactions.routes import RouteMatch
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx


async def handle(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    assert m.type and m.id and req.context
    svc.policy.check(req.context, "delete", m.type)
    type, id = m.type, m.id

    async def work(db: StorageTx) -> Response:
        return await delete_one(svc, req, db, type, id)

    return await svc.in_transaction(tx, work, retry=req.header("if-match") is None)


async def conditional(
    svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None
) -> Response:
    assert m.type and req.context
    ctx, type = req.context, m.type
    svc.policy.check(ctx, "delete", type)
    criteria = query_criteria(req)

    async def work(db: StorageTx) -> Response:
        found = await svc.find(db, ctx, type, criteria)
        if len(found) > 1:
            raise PreconditionFailed(f"The criteria match more than one {type}; none deleted")
        if not found:
            return Response(204)
        return await delete_one(svc, req, db, type, found[0].id)

    return await svc.in_transaction(tx, work)


async def delete_one(svc: FhirService, req: Request, db: StorageTx, type: str, id: str) -> Response:
    assert req.context
    try:
        current = await svc.current(req.context, type, id, db=db)
    except (NotFound, Gone):  # deleting what is not there succeeds, unless If-Match asks
        svc.check_if_match(req, None)
        return Response(204)
    svc.check_if_match(req, current)
    svc.policy.check_resource(req.context, "delete", type, fhirjson.loads(current.data))
    rec = await svc.store(db, type, id, None, current=current, method="DELETE")
    return Response(204, None, {"ETag": etag(rec)})
