"""HTTP adapter of CDS Hooks, beside the FHIR API (outside /fhir):

    GET  /cds-services                 discovery
    POST /cds-services/{id}            call a service (application/json)
    POST /cds-services/{id}/feedback   report what became of its cards (application/json)

Every request carries the CDS client's JWT (unless FHIR_CDS_AUTH=off), whose `aud` must be
the exact URL called: the public root (FHIR_BASE_URL without its `/fhir`, else the URL the
request reached) and the path. The logic lives in `cds_hooks.endpoint`; failures render
as OperationOutcome like the FHIR API's.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI
from starlette.requests import Request as HttpRequest
from starlette.responses import Response as HttpResponse

from cds_hooks.endpoint import Authorize, CdsHooks, OwnFhir
from cds_hooks.store import CdsClient
from fhir_server.auth.bearer import BearerVerifier
from fhir_server.auth.reach import OrganizationReach
from fhir_server.context import ANONYMOUS, AccessContext
from fhir_server.errors import UnsupportedMediaType
from fhir_server.interactions.service import FhirService

CDS_PATH = "/cds-services"
FHIR_PREFIX = "/fhir"
JSON_MEDIA = "application/json"


def install(app: FastAPI) -> None:
    app.add_api_route(CDS_PATH, discovery, methods=["GET"], include_in_schema=False)
    app.add_api_route(CDS_PATH + "/{service_id}", call, methods=["POST"], include_in_schema=False)
    app.add_api_route(
        CDS_PATH + "/{service_id}/feedback", feedback, methods=["POST"], include_in_schema=False
    )


async def discovery(request: HttpRequest) -> HttpResponse:
    cds: CdsHooks = request.app.state.cds
    await _client(request)
    return _json(cds.discovery())


async def call(request: HttpRequest, service_id: str) -> HttpResponse:
    cds: CdsHooks = request.app.state.cds
    client = await _client(request)
    service: FhirService = request.app.state.service
    base = service.base_url or _root(request) + FHIR_PREFIX
    own = OwnFhir(service, base, _authorize(request, base))
    return _json(await cds.call(service_id, await _body(request), client=client, own=own))


async def feedback(request: HttpRequest, service_id: str) -> HttpResponse:
    cds: CdsHooks = request.app.state.cds
    client = await _client(request)
    await cds.feedback(service_id, await _body(request), client)
    return HttpResponse(status_code=200)


async def _client(request: HttpRequest) -> CdsClient | None:
    cds: CdsHooks = request.app.state.cds
    url = _root(request) + request.url.path
    return await cds.authenticate(request.headers.get("authorization"), url)


async def _body(request: HttpRequest) -> bytes:
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != JSON_MEDIA:
        raise UnsupportedMediaType(f"CDS Hooks requests are {JSON_MEDIA}, not {media or 'untyped'}")
    return await request.body()


def _root(request: HttpRequest) -> str:
    """The public root the CDS endpoints sit under (the FHIR base without /fhir)."""
    service: FhirService = request.app.state.service
    if service.base_url:
        return service.base_url.rstrip("/").removesuffix(FHIR_PREFIX)
    return str(request.base_url).rstrip("/")


def _authorize(request: HttpRequest, base: str) -> Authorize:
    """How a `fhirAuthorization` token is checked when `fhirServer` is this server: as the
    FHIR API checks it, with the same organization reach."""

    async def authorize(token: str | None) -> AccessContext:
        verifier: BearerVerifier | None = request.app.state.verifier
        if verifier is None:
            return ANONYMOUS
        caller = await verifier.verify(f"Bearer {token}" if token else None, base)
        reach: OrganizationReach | None = request.app.state.reach
        return caller if reach is None else await reach.apply(caller)

    return authorize


def _json(body: object) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), media_type=JSON_MEDIA)
