"""The HTTP adapter: FastAPI in front of the framework-free FHIR service.

Every request under `/fhir` becomes one `interactions.Request`; the service's route table
decides what it is. This package is the only one that imports a web framework.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HttpRequest
from starlette.responses import Response as HttpResponse
from starlette.types import Receive, Scope, Send

from cds_hooks.service import CdsService
from fhir_server.api import (
    auth_manage_routes,
    auth_token_routes,
    auth_ui_routes,
    cds_routes,
    fast_path,
    ops_routes,
    raw_binary,
    subscription_ws,
)
from fhir_server.api.audit_middleware import AuditMiddleware
from fhir_server.api.content import (
    FORM_TYPE,
    MEDIA,
    Format,
    parse_body,
    render,
    response_format,
)
from fhir_server.api.cors import CorsMiddleware
from fhir_server.api.fast_path import FastReads
from fhir_server.api.hosts import AllowedHostsMiddleware, allowed_hosts
from fhir_server.api.media_types import MediaTypeMiddleware
from fhir_server.api.middleware import BodyLimitMiddleware
from fhir_server.api.request_ids import RequestIdMiddleware
from fhir_server.api.request_metrics import RequestCounter, RequestMetricsMiddleware
from fhir_server.api.timeouts import BodyTimeoutMiddleware
from fhir_server.assembly import (
    Auth,
    open_audit,
    open_auth,
    open_cds,
    open_service,
    start_background,
)
from fhir_server.auth.authorize import AuthorizationServer
from fhir_server.auth.bearer import BearerVerifier
from fhir_server.auth.flow import AuthUi
from fhir_server.auth.reach import OrganizationReach
from fhir_server.context import ANONYMOUS, AccessContext
from fhir_server.errors import FhirError, Issue, MethodNotAllowed, NotFound, operation_outcome
from fhir_server.interactions import observed, routes
from fhir_server.interactions.binary import wants_raw
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.logs import with_request_id
from fhir_server.parameters import FORMAT, PRETTY
from fhir_server.settings import Settings
from fhir_server.storage.base import Storage

log = logging.getLogger("fhir_server")
FHIR_PREFIX = "/fhir"
HL7_PATH = "/hl7v2"
HL7_MEDIA = "x-application/hl7-v2+er7"
_BODY_METHODS = ("POST", "PUT", "PATCH")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
PARSE_IN_THREAD_BYTES = 256 * 1024  # larger bodies are parsed off the event loop


def create_app(
    settings: Settings | None = None,
    storage: Storage | None = None,
    *,
    auth_server: AuthorizationServer | None = None,
    verifier: BearerVerifier | None = None,
    cds_services: Iterable[CdsService] | None = None,
) -> FastAPI:
    """The ASGI app: FHIR REST under /fhir, the SMART authorization server and its sign-in
    pages under /auth, CDS Hooks under /cds-services, storage opened and closed with the app.

    With authorization on, every request but `metadata` needs an access token that
    `verifier` (by default: one over the server's own signing keys) accepts. Tests may hand
    in another `auth_server` for the sign-in pages, and the CDS services to offer."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_service(settings, storage) as service,
            open_auth(settings, service) as auth,
            open_cds(settings, auth, cds_services) as cds,
            open_audit(settings, service) as audit,
            start_background(settings, service, audit) as background,
        ):
            app.state.audit = audit
            app.state.cds = cds
            app.state.service = service
            app.state.auth = auth
            app.state.hl7 = background.hl7
            app.state.auth_ui = AuthUi.build(
                settings, service, auth.users, auth_server or auth.server
            )
            app.state.verifier = _verifier(settings, verifier, auth)
            app.state.reach = _reach(settings, service)
            yield

    app = FhirApp(
        title="FHIR R4 server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    _add_middleware(app, settings)
    auth_token_routes.install(app, FHIR_PREFIX)  # before /fhir/{path}: .well-known
    for path in (FHIR_PREFIX, FHIR_PREFIX + "/{path:path}"):
        app.add_api_route(path, fhir_endpoint, methods=list(_METHODS), include_in_schema=False)
        app.add_api_route(path, options_endpoint, methods=["OPTIONS"], include_in_schema=False)
    app.add_api_route(HL7_PATH, hl7v2_endpoint, methods=["POST"], include_in_schema=False)
    auth_ui_routes.install(app)
    auth_manage_routes.install(app)
    ops_routes.install(app, settings)
    cds_routes.install(app)
    subscription_ws.install(app)
    app.add_exception_handler(FhirError, _fhir_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(HTTPException, _no_route)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    app.fast_reads = FastReads(
        FHIR_PREFIX,
        allowed_hosts(settings),
        RequestCounter(FHIR_PREFIX),
        fast_read,
        elsewhere=_other_fhir_routes(app),
    )
    return app


def _other_fhir_routes(app: FastAPI) -> list[re.Pattern[str]]:
    """The path patterns under /fhir that routes other than the FHIR endpoint serve."""
    return [
        route.path_regex
        for route in app.routes
        if isinstance(route, APIRoute)
        and route.path.startswith(FHIR_PREFIX)
        and route.endpoint not in (fhir_endpoint, options_endpoint)
    ]


class FhirApp(FastAPI):
    """The app, with plain reads answered by `fast_reads` (see `fhir_server.api.fast_path`)
    and everything else by the middleware and routes below."""

    fast_reads: FastReads | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_reads
        if fast is not None and scope["type"] == "http" and fast.accepts(scope, self.state):
            scope["app"] = self
            await fast(scope, receive, send, self.state)
            return
        await super().__call__(scope, receive, send)


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """The request guards, innermost first (Starlette wraps each added one around the rest)."""
    app.add_middleware(
        MediaTypeMiddleware, fhir_prefix=FHIR_PREFIX, hl7_path=HL7_PATH, hl7_media=HL7_MEDIA
    )
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_bytes,
        raw_limit=settings.max_binary_bytes,
        is_raw=_raw_upload,
    )
    app.add_middleware(
        BodyTimeoutMiddleware, timeout=settings.body_timeout, min_rate=settings.body_min_rate
    )
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(CorsMiddleware, origins=origins)
    app.add_middleware(AllowedHostsMiddleware, hosts=allowed_hosts(settings))
    app.add_middleware(RequestMetricsMiddleware, fhir_prefix=FHIR_PREFIX)
    app.add_middleware(AuditMiddleware, fhir_prefix=FHIR_PREFIX, hl7_path=HL7_PATH)
    app.add_middleware(RequestIdMiddleware)  # outermost: every answer carries the id


def _raw_upload(method: str, path: str, content_type: str | None) -> bool:
    """A raw Binary upload (its own, larger body limit)."""
    relative = path.removeprefix(FHIR_PREFIX)
    return path.startswith(FHIR_PREFIX) and raw_binary.is_upload(method, relative, content_type)


async def options_endpoint(request: HttpRequest) -> HttpResponse:
    """FHIR has no OPTIONS interaction; HTTP's answer is 200 with the methods in `Allow`.

    (A browser's CORS preflight is answered before this, by the CORS middleware.)"""
    service: FhirService = request.app.state.service
    path = request.path_params.get("path", "")
    allowed: list[str] = []
    missing: FhirError | None = None
    for method in _METHODS:
        try:
            routes.match("GET" if method == "HEAD" else method, path, service.resource_types)
            allowed.append(method)
        except MethodNotAllowed:
            continue
        except NotFound as error:
            missing = error
    if not allowed and missing is not None:
        raise missing
    return HttpResponse(status_code=200, headers={"Allow": ", ".join([*allowed, "OPTIONS"])})


def _verifier(
    settings: Settings, given: BearerVerifier | None, auth: Auth
) -> BearerVerifier | None:
    """What checks bearer tokens: none with authorization off, else `given` or one over the
    server's own signing keys and revocations."""
    if settings.auth == "off":
        log.warning(
            "authorization is OFF (FHIR_AUTH=off): every caller may read and write "
            "everything; for local experiments only"
        )
        return None
    if given is not None:
        return given
    return BearerVerifier(auth.keys, auth.store, issuer=settings.auth_issuer)


def _reach(settings: Settings, service: FhirService) -> OrganizationReach | None:
    """What limits a practitioner to the patients of their organizations (None: nothing)."""
    if settings.auth == "off" or settings.auth_clinician_scope != "organization":
        return None
    return OrganizationReach(service)


async def _caller(
    state: Any, method: str, path: str, authorization: str | None, base: str
) -> AccessContext:
    """Who is asking: the verified token's context (authorization on) or ANONYMOUS; told
    to the audit trail's record of this request."""
    caller = await _verified(state, method, path, authorization, base)
    seen = observed.current()
    if seen is not None:
        seen.context = caller
    return caller


async def _verified(
    state: Any, method: str, path: str, authorization: str | None, base: str
) -> AccessContext:
    verifier: BearerVerifier | None = state.verifier
    if verifier is None:
        return ANONYMOUS
    if method in ("GET", "HEAD") and path.strip("/") == "metadata":
        return ANONYMOUS  # the CapabilityStatement is public (SMART discovery reads it)
    caller = await verifier.verify(authorization, base)
    reach: OrganizationReach | None = state.reach
    return caller if reach is None else await reach.apply(caller)


async def hl7v2_endpoint(request: HttpRequest) -> HttpResponse:
    """One HL7 v2 ER7 message in the body, its ACK out (the application ACK, if any)."""
    service: FhirService = request.app.state.service
    caller = await _caller(
        request.app.state,
        request.method,
        HL7_PATH,
        request.headers.get("authorization"),
        service.base_url or _base(request),
    )
    service.policy.check(caller, "admin", None)  # feeding messages needs system/*.cruds
    hl7 = getattr(request.app.state, "hl7", None)
    if hl7 is None:
        raise NotFound(
            "HL7 v2 is not enabled: set FHIR_MLLP_PORT, FHIR_HL7_DESTINATIONS or FHIR_HL7_INBOX"
        )
    acks = await hl7.exchange(await request.body())
    if not acks:  # an ACK sent to us, or enhanced mode asking for no answer
        return HttpResponse(status_code=204)
    return HttpResponse(acks[-1], media_type=HL7_MEDIA)


async def fhir_endpoint(request: HttpRequest) -> HttpResponse:
    state = request.app.state
    service: FhirService = state.service
    query = parse_qsl(request.url.query, keep_blank_values=True)
    path = request.path_params.get("path", "")
    method = request.method
    headers = dict(request.headers)
    fmt = request.state.fhir_format = _negotiate(method, path, headers, query)
    base = service.base_url or _base(request)
    caller = await _caller(state, method, path, headers.get("authorization"), base)
    body: Any = None
    blob = None
    if raw_binary.is_upload(method, path, headers.get("content-type")):
        body, blob = await raw_binary.upload(request, service, caller, path)
    elif method in _BODY_METHODS:
        raw = await request.body()
        content_type = headers.get("content-type")
        if content_type and content_type.split(";")[0].strip().lower() == FORM_TYPE:
            query += parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        elif raw.strip():
            body = await _parse(content_type, raw)
    req = Request(
        method="GET" if method == "HEAD" else method,
        path=path,
        query=tuple(query),
        headers=headers,
        body=body,
        context=caller,
        base=base,
        blob=blob,
    )
    return await _answer(service, req, method == "HEAD", fmt)


async def fast_read(
    state: Any, scope: Scope, headers: dict[str, str], query: list[tuple[str, str]]
) -> HttpResponse:
    """`fhir_endpoint` for a plain GET or HEAD under /fhir (see `fast_path`), its errors
    answered as the exception handlers answer them."""
    method: str = scope["method"]
    path: str = scope["path"][len(FHIR_PREFIX) + 1 :]
    fmt: Format = "json"
    try:
        fmt = _negotiate(method, path, headers, query)
        service: FhirService = state.service
        base = service.base_url or fast_path.base_url(scope, FHIR_PREFIX)
        caller = await _caller(state, method, path, headers.get("authorization"), base)
        req = Request(
            method="GET",
            path=path,
            query=tuple(query),
            headers=headers,
            context=caller,
            base=base,
        )
        return await _answer(service, req, method == "HEAD", fmt)
    except FhirError as error:
        return _outcome(method, scope["path"], fmt, error.status, error.outcome(), error.headers)
    except Exception:
        log.exception("unexpected error on %s %s", method, scope["path"])
        issue = Issue("An unexpected error occurred; it was logged", "exception")
        return _outcome(method, scope["path"], fmt, 500, operation_outcome([issue]), {})


def _negotiate(
    method: str, path: str, headers: dict[str, str], query: list[tuple[str, str]]
) -> Format:
    """The response format (406 when none fits); a raw Binary read answers errors in JSON."""
    accept = headers.get("accept")
    if raw_binary.is_binary_read(method, path) and wants_raw(accept):
        accept = None  # the bytes themselves; an error is FHIR JSON
    return response_format(accept, _first(query, FORMAT))


async def _answer(service: FhirService, req: Request, head: bool, fmt: Format) -> HttpResponse:
    """Run `req` through the service and render its result in `fmt`."""
    result = await service.handle(req)
    if result.raw is not None:
        return raw_binary.streamed(result.raw, result, head=head)
    headers = dict(result.headers)
    if result.body is None:
        return HttpResponse(status_code=result.status, headers=headers)
    # HEAD: rendered as GET, so Content-Type and Content-Length are the GET's (RFC 9110
    # 9.3.2); the HTTP server sends no body for a HEAD request.
    pretty = _first(req.query, PRETTY) == "true"
    body = with_request_id(result.body) if isinstance(result.body, dict) else result.body
    content = render(body, fmt, pretty)
    return HttpResponse(content, status_code=result.status, headers=headers, media_type=MEDIA[fmt])


async def _parse(content_type: str | None, raw: bytes) -> object:
    """A large body is parsed on a worker thread, so other requests go on meanwhile."""
    if len(raw) <= PARSE_IN_THREAD_BYTES:
        return parse_body(content_type, raw)
    return await asyncio.to_thread(parse_body, content_type, raw)


def _first(query: Iterable[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in query if k == name), None)


def _base(request: HttpRequest) -> str:
    return str(request.base_url).rstrip("/") + FHIR_PREFIX


async def _fhir_error(request: HttpRequest, error: FhirError) -> HttpResponse:
    return _outcome_response(request, error.status, error.outcome(), error.headers)


async def _no_route(request: HttpRequest, error: HTTPException) -> HttpResponse:
    """The router's own 404 and 405 (paths and methods outside /fhir: /cds-services,
    /health, /metrics...) as an OperationOutcome like every other error; `Allow` kept."""
    code = {404: "not-found", 405: "not-supported"}.get(error.status_code, "invalid")
    what = f"{request.method} is not supported here" if error.status_code == 405 else error.detail
    outcome = operation_outcome([Issue(str(what), code)])
    return _outcome_response(request, error.status_code, outcome, dict(error.headers or {}))


async def _client_gone(request: HttpRequest, error: Exception) -> HttpResponse:
    """A client that left before its body was all sent: nobody reads this answer, and it is
    neither a server error nor a traceback in the log (a 400 in the metrics)."""
    outcome = operation_outcome(
        [Issue("The request body was cut short: the client disconnected", "incomplete")]
    )
    return _outcome_response(request, 400, outcome, {})


async def _unexpected(request: HttpRequest, error: Exception) -> HttpResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    outcome = operation_outcome([Issue("An unexpected error occurred; it was logged", "exception")])
    return _outcome_response(request, 500, outcome, {})


def _outcome_response(
    request: HttpRequest, status: int, outcome: dict[str, Any], headers: dict[str, str]
) -> HttpResponse:
    fmt: Format = getattr(request.state, "fhir_format", None) or "json"
    return _outcome(request.method, request.url.path, fmt, status, outcome, headers)


def _outcome(
    method: str,
    path: str,
    fmt: Format,
    status: int,
    outcome: dict[str, Any],
    headers: dict[str, str],
) -> HttpResponse:
    log.debug("%s %s answered %d", method, path, status)
    outcome = with_request_id(outcome)
    try:
        content = render(outcome, fmt, pretty=False)
    except FhirError:
        fmt, content = "json", render(outcome, "json", pretty=False)
    return HttpResponse(content, status_code=status, headers=headers, media_type=MEDIA[fmt])
