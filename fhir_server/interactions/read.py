"""FHIR read and vread interactions.

https://hl7.org/fhir/R4/http.html#read and https://hl7.org/fhir/R4/http.html#vread --
"Servers SHOULD return an ETag header with the versionId of the resource"; a deleted
resource answers 410 Gone, an unknown one 404 Not Found. Conditional read: If-None-Match
and If-Modified-Since answer 304 when the client's copy is current.
"""

from __future__ import annotations

from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from fhir_server.errors import BadRequest, NotFound
from fhir_server.interactions import binary
from fhir_server.interactions.common import etag, version_headers
from fhir_server.interactions.request import Request, Response
from fhir_server.model import fhirjson
from fhir_server.model.summary import apply_elements, apply_summary
from fhir_server.storage.base import StoredResource

if TYPE_CHECKING:
    from fhir_server.interactions.routes import RouteMatch
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx


async def read(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    assert m.type and m.id and req.context
    svc.policy.check(req.context, "read", m.type)
    rec = await svc.current(req.context, m.type, m.id, db=tx)
    if _not_modified(req, rec):
        return Response(304, None, version_headers(req, rec), not_modified=True)
    if rec.type == "Binary":
        return await _binary(svc, req, rec)
    return shaped(req, svc.disclosure.present(req.context, rec), 200)


async def vread(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    assert m.type and m.id and m.vid and req.context
    svc.policy.check(req.context, "read", m.type)
    if not m.vid.isdigit():
        raise NotFound(f"{m.type}/{m.id} has no version '{m.vid}'")
    rec = await svc.current(req.context, m.type, m.id, version=int(m.vid))
    if rec.type == "Binary":
        return await _binary(svc, req, rec)
    return shaped(req, svc.disclosure.present(req.context, rec), 200)


async def _binary(svc: FhirService, req: Request, rec: StoredResource) -> Response:
    """A Binary as its own bytes (Accept not FHIR) or as FHIR with `data` (binary.py)."""
    if binary.wants_raw(req.header("accept")) and req.param("_format") is None:
        return await binary.raw_response(req, rec, svc.blobs)
    if req.param("_elements") or req.param("_summary") not in (None, "false"):
        return shaped(req, rec, 200)
    return await binary.json_response(req, rec, svc.blobs, svc.max_inline_binary_bytes)


def _not_modified(req: Request, rec: StoredResource) -> bool:
    none_match = req.header("if-none-match")
    if none_match is not None:
        tags = {t.strip() for t in none_match.split(",")}
        return "*" in tags or etag(rec) in tags or f'"{rec.version}"' in tags
    since = req.header("if-modified-since")
    if since is not None:
        try:
            moment = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            raise BadRequest(f"If-Modified-Since '{since}' is not an HTTP date") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        stored = rec.last_updated[:19]  # HTTP dates have whole seconds
        return stored <= moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return False


def shaped(req: Request, rec: StoredResource, status: int) -> Response:
    """The stored bytes as they are, or the subset `_summary` / `_elements` ask for."""
    summary = req.param("_summary")
    elements = req.param("_elements")
    headers = version_headers(req, rec)
    if summary in (None, "false") and not elements:
        return Response(status, rec.data, headers)
    resource = fhirjson.loads(rec.data)
    if summary not in (None, "false"):
        if summary not in ("true", "text", "data"):
            raise BadRequest(f"_summary={summary} is not one of true, text, data, count, false")
        resource = apply_summary(resource, summary)
    if elements:
        resource = apply_elements(resource, [e.strip() for e in elements.split(",") if e.strip()])
    return Response(status, resource, headers)
