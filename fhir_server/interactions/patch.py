"""FHIR patch interaction with JSON Patch or FHIRPath Patch, plain and conditional.

https://hl7.org/fhir/R4/http.html#patch -- "The body of a PATCH operation SHALL be either
a JSON Patch document with a content type of application/json-patch+json, an XML Patch
document ..., or a FHIRPath Patch parameters Resource". The patched resource is validated
like any update and becomes the next version; If-Match makes it version-aware.
Conditional patch (`PATCH Type?criteria`), same section: "No matches: The server returns a
404 Not Found"; one match is patched; several are a 412 Precondition Failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.errors import BadRequest, NotFound, PreconditionFailed, Unprocessable
from fhir_server.interactions.common import query_criteria
from fhir_server.interactions.request import Request, Response
from fhir_server.interactions.update import unchanged
from fhir_server.model import fhirjson
from fhir_server.model.fhirpath_patch import apply_fhirpath_patch, apply_json_patch

if TYPE_CHECKING:
    from fhir_server.interactions.routes import RouteMatch
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx


async def handle(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    assert m.type and m.id and req.context
    svc.policy.check(req.context, "update", m.type)
    _check_patch_body(req.body)
    type, id = m.type, m.id

    async def work(db: StorageTx) -> Response:
        return await patch_one(svc, req, db, type, id)

    return await svc.in_transaction(tx, work, retry=req.header("if-match") is None)


async def conditional(
    svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None
) -> Response:
    assert m.type and req.context
    ctx, type = req.context, m.type
    svc.policy.check(ctx, "update", type)
    _check_patch_body(req.body)
    criteria = query_criteria(req)

    async def work(db: StorageTx) -> Response:
        found = await svc.find(db, ctx, type, criteria)
        if not found:
            raise NotFound(f"No {type} matches the conditional patch's criteria")
        if len(found) > 1:
            raise PreconditionFailed(f"The criteria match more than one {type}; none patched")
        return await patch_one(svc, req, db, type, found[0].id)

    return await svc.in_transaction(tx, work)


async def patch_one(svc: FhirService, req: Request, db: StorageTx, type: str, id: str) -> Response:
    current = await db.read(type, id)
    if current is None or current.deleted:
        raise NotFound(f"{type}/{id} is not known")
    svc.check_if_match(req, current)
    assert req.context
    before = fhirjson.loads(current.data)
    svc.policy.check_resource(req.context, "update", type, before)
    after = _apply(before, req.body)  # a new resource: `before` stays as it was
    if after.get("resourceType") != type or after.get("id") != id:
        raise Unprocessable("A patch may not change the resource type or id")
    after = svc.validate(after)
    svc.policy.check_resource(req.context, "update", type, after)
    if unchanged(current, after, before):  # as an update with the same content: no new version
        return svc.resource_response(req, current, 200)
    rec = await svc.store(db, type, id, after, current=current, method="PATCH")
    return svc.resource_response(req, rec, 200)


def _apply(resource: dict[str, Any], body: object) -> dict[str, Any]:
    if isinstance(body, list):
        return apply_json_patch(resource, body)
    assert isinstance(body, dict)
    return apply_fhirpath_patch(resource, body)


def _check_patch_body(body: object) -> None:
    if isinstance(body, list):
        return
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        return
    raise BadRequest(
        "A PATCH body must be a JSON Patch document (application/json-patch+json) "
        "or a FHIRPath Patch Parameters resource"
    )
