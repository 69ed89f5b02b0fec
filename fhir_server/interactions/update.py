"""FHIR update interaction, plain, as create, and conditional.

https://hl7.org/fhir/R4/http.html#update -- "the resource SHALL contain an id element that
has an identical value to the [id] in the URL"; an unknown id creates the resource
(update as create, 201). If-Match makes it a version-aware update (412 on mismatch).
An update that changes nothing but meta keeps the current version (no new history entry),
so replaying a feed is harmless.
https://hl7.org/fhir/R4/http.html#cond-update -- no match creates, one match updates it,
several fail with 412.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.errors import BadRequest, PreconditionFailed
from fhir_server.interactions.common import criteria_key, new_id, query_criteria
from fhir_server.interactions.request import Request, Response
from fhir_server.model import fhirjson
from fhir_server.storage.base import StoredResource

if TYPE_CHECKING:
    from fhir_server.interactions.routes import RouteMatch
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx


async def handle(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    assert m.type and m.id and req.context
    svc.policy.check(req.context, "update", m.type)
    resource = svc.resource_from_body(req, m.type)
    if resource.get("id") != m.id:
        raise BadRequest(
            f"The body's id '{resource.get('id')}' does not match '{m.id}' in the URL",
            expression=("id",),
        )
    svc.policy.check_resource(req.context, "update", m.type, resource)
    type, id = m.type, m.id

    async def work(db: StorageTx) -> Response:
        return await write_update(svc, req, db, type, id, resource)

    return await svc.in_transaction(tx, work, retry=req.header("if-match") is None)


async def conditional(
    svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None
) -> Response:
    assert m.type and req.context
    ctx, type = req.context, m.type
    svc.policy.check(ctx, "update", type)
    criteria = query_criteria(req)
    resource = svc.resource_from_body(req, type)
    svc.policy.check_resource(ctx, "update", type, resource)

    async def work(db: StorageTx) -> Response:
        await db.lock(criteria_key(type, criteria))
        found = await svc.find(db, ctx, type, criteria)
        if len(found) > 1:
            raise PreconditionFailed(f"The criteria match more than one {type}")
        body_id = resource.get("id")
        if found and body_id and body_id != found[0].id:
            raise BadRequest(f"The body's id '{body_id}' is not the matched {found[0].id}")
        id = found[0].id if found else (body_id or new_id())
        return await write_update(svc, req, db, type, id, resource)

    return await svc.in_transaction(tx, work)


async def write_update(
    svc: FhirService, req: Request, db: StorageTx, type: str, id: str, resource: dict[str, Any]
) -> Response:
    """Store `resource` as the next version of Type/id (201 if that creates it)."""
    assert req.context
    current = await db.read(type, id)
    svc.check_if_match(req, current)
    if current is not None and not current.deleted:
        stored = fhirjson.loads(current.data)
        # the version replaced must be the caller's to update too (no overwriting what
        # another patient's compartment holds with a body in one's own)
        svc.policy.check_resource(req.context, "update", type, stored)
        if unchanged(current, resource, stored):
            return svc.resource_response(req, current, 200)
    rec = await svc.store(db, type, id, resource, current=current, method="PUT")
    created = current is None or current.deleted
    return svc.resource_response(req, rec, 201 if created else 200)


def unchanged(
    current: StoredResource, resource: dict[str, Any], stored: dict[str, Any] | None = None
) -> bool:
    """Whether `resource` equals the stored version (`stored`: it parsed), server-owned meta
    aside."""
    stored = fhirjson.loads(current.data) if stored is None else stored
    return _without_server_meta(stored) == _without_server_meta({**resource, "id": current.id})


def _without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: v
        for k, v in (resource.get("meta") or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    body = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        body["meta"] = meta
    return body
