"""The HTTP adapter: FastAPI in front of the framework-free FHIR service.

Every request under `/fhir` becomes one `interactions.Request`; the service's route table
decides what it is. This package is the only one that imports a web framework.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.requests import Request as HttpRequest
from starlette.responses import Response as HttpResponse

from fhir_server.api.content import FORM_TYPE, MEDIA, Format, parse_body, render, response_format
from fhir_server.api.middleware import BodyLimitMiddleware
from fhir_server.assembly import open_service, start_background
from fhir_server.auth.bearer import BearerVerifier
from fhir_server.context import ANONYMOUS, AccessContext
from fhir_server.errors import FhirError, Issue, NotFound, operation_outcome
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.parameters import FORMAT, PRETTY
from fhir_server.settings import Settings
from fhir_server.storage.base import Storage

log = logging.getLogger("fhir_server")
FHIR_PREFIX = "/fhir"
HL7_PATH = "/hl7v2"
HL7_MEDIA = "x-application/hl7-v2+er7"
_BODY_METHODS = ("POST", "PUT", "PATCH")


def create_app(settings: Settings | None = None, storage: Storage | None = None, *,
               verifier: BearerVerifier | None = None) -> FastAPI:
    """The ASGI app: FHIR REST under /fhir, storage opened and closed with the app.

    With authorization on, every request but `metadata` needs an access token that
    `verifier` accepts."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (open_service(settings, storage) as service,
                    start_background(settings, service) as background):
            app.state.service = service
            app.state.hl7 = background.hl7
            app.state.verifier = _verifier(settings, verifier)
            yield

    app = FastAPI(title="FHIR R4 server", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    app.add_api_route(FHIR_PREFIX, fhir_endpoint, methods=methods, include_in_schema=False)
    app.add_api_route(FHIR_PREFIX + "/{path:path}", fhir_endpoint, methods=methods,
                      include_in_schema=False)
    app.add_api_route(HL7_PATH, hl7v2_endpoint, methods=["POST"], include_in_schema=False)
    app.add_exception_handler(FhirError, _fhir_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    return app


def _verifier(settings: Settings, given: BearerVerifier | None) -> BearerVerifier | None:
    if settings.auth == "off":
        log.warning("authorization is OFF (FHIR_AUTH=off): every caller may read and write "
                    "everything; for local experiments only")
        return None
    if given is not None:
        return given
    # TODO(SMART): the authorization server's KeyRing and store from the assembly
    log.error("authorization is on but no signing keys are configured: every token is refused")
    return BearerVerifier(_NoKeys(), issuer=getattr(settings, "auth_issuer", None))


class _NoKeys:
    def public_jwks(self) -> dict[str, Any]:
        return {"keys": []}

    async def refresh(self) -> None:
        return None


async def _caller(request: HttpRequest, path: str, base: str) -> AccessContext:
    """Who is asking: the verified token's context (authorization on) or ANONYMOUS."""
    verifier: BearerVerifier | None = request.app.state.verifier
    if verifier is None:
        return ANONYMOUS
    if request.method in ("GET", "HEAD") and path.strip("/") == "metadata":
        return ANONYMOUS  # the CapabilityStatement is public (SMART discovery reads it)
    return await verifier.verify(request.headers.get("authorization"), base)


async def hl7v2_endpoint(request: HttpRequest) -> HttpResponse:
    """One HL7 v2 ER7 message in the body, its ACK out (the application ACK, if any)."""
    service: FhirService = request.app.state.service
    caller = await _caller(request, HL7_PATH, service.base_url or _base(request))
    service.policy.check(caller, "admin", None)  # feeding messages needs system/*.cruds
    hl7 = getattr(request.app.state, "hl7", None)
    if hl7 is None:
        raise NotFound("HL7 v2 is not enabled: set FHIR_MLLP_PORT, FHIR_HL7_DESTINATIONS or "
                       "FHIR_HL7_INBOX")
    acks = await hl7.exchange(await request.body())
    if not acks:  # an ACK sent to us, or enhanced mode asking for no answer
        return HttpResponse(status_code=204)
    return HttpResponse(acks[-1], media_type=HL7_MEDIA)


async def fhir_endpoint(request: HttpRequest) -> HttpResponse:
    service: FhirService = request.app.state.service
    query = parse_qsl(request.url.query, keep_blank_values=True)
    fmt = response_format(request.headers.get("accept"), _first(query, FORMAT))
    request.state.fhir_format = fmt
    path = request.path_params.get("path", "")
    base = service.base_url or _base(request)
    caller = await _caller(request, path, base)
    body = None
    method = request.method
    if method in _BODY_METHODS:
        raw = await request.body()
        content_type = request.headers.get("content-type")
        if content_type and content_type.split(";")[0].strip().lower() == FORM_TYPE:
            query += parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        elif raw.strip():
            body = parse_body(content_type, raw)
    req = Request(
        method="GET" if method == "HEAD" else method,
        path=path,
        query=tuple(query),
        headers=dict(request.headers),
        body=body,
        context=caller,
        base=base,
    )
    result = await service.handle(req)
    headers = dict(result.headers)
    if result.body is None or method == "HEAD":
        return HttpResponse(status_code=result.status, headers=headers)
    pretty = _first(query, PRETTY) == "true"
    content = render(result.body, fmt, pretty)
    return HttpResponse(content, status_code=result.status, headers=headers,
                        media_type=MEDIA[fmt])


def _first(query: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in query if k == name), None)


def _base(request: HttpRequest) -> str:
    return str(request.base_url).rstrip("/") + FHIR_PREFIX


async def _fhir_error(request: HttpRequest, error: FhirError) -> HttpResponse:
    return _outcome_response(request, error.status, error.outcome(), error.headers)


async def _unexpected(request: HttpRequest, error: Exception) -> HttpResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    outcome = operation_outcome([Issue("An unexpected error occurred; it was logged",
                                       "exception")])
    return _outcome_response(request, 500, outcome, {})


def _outcome_response(
    request: HttpRequest, status: int, outcome: dict[str, Any], headers: dict[str, str]
) -> HttpResponse:
    fmt: Format = getattr(request.state, "fhir_format", None) or "json"
    try:
        content = render(outcome, fmt, pretty=False)
    except FhirError:
        fmt, content = "json", render(outcome, "json", pretty=False)
    return HttpResponse(content, status_code=status, headers=headers, media_type=MEDIA[fmt])
