"""HTTP adapter of the authorization server's machine endpoints and discovery documents.

    POST /auth/token, /auth/introspect, /auth/revoke    form in, JSON out (RFC 6749 errors)
    GET  /auth/jwks                                     the public signing keys
    GET  /auth/.well-known/openid-configuration         OpenID Provider metadata
    GET  /fhir/.well-known/smart-configuration          SMART's discovery document

Discovery documents, the JWKS and the token endpoints answer every origin (CORS `*`):
browser apps call them cross-origin, and none of them relies on cookies.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from starlette.requests import Request as HttpRequest
from starlette.responses import Response as HttpResponse

from fhir_server.auth.discovery import openid_configuration, smart_configuration
from fhir_server.auth.server import Reply, SmartAuthServer
from fhir_server.interactions import observed

FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 64 * 1024
CORS = {"Access-Control-Allow-Origin": "*"}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


def install(app: FastAPI, fhir_prefix: str = "/fhir") -> None:
    """Add the routes; call before the FHIR catch-all route so that these match first."""
    app.add_api_route(
        fhir_prefix + "/.well-known/smart-configuration",
        smart_config,
        methods=["GET"],
        include_in_schema=False,
    )
    app.add_api_route(
        "/auth/.well-known/openid-configuration",
        openid_config,
        methods=["GET"],
        include_in_schema=False,
    )
    app.add_api_route("/auth/jwks", jwks, methods=["GET"], include_in_schema=False)
    for name, endpoint in (("token", token), ("introspect", introspect), ("revoke", revoke)):
        app.add_api_route(f"/auth/{name}", endpoint, methods=["POST"], include_in_schema=False)
        app.add_api_route(f"/auth/{name}", preflight, methods=["OPTIONS"], include_in_schema=False)


def _server(request: HttpRequest) -> SmartAuthServer:
    server: SmartAuthServer = request.app.state.auth.server
    return server


def request_base(request: HttpRequest) -> str:
    """The FHIR base this request was addressed to (the settings' base URL wins)."""
    return str(request.base_url).rstrip("/") + "/fhir"


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**CORS, **(headers or {})},
    )


async def smart_config(request: HttpRequest) -> HttpResponse:
    return _json(smart_configuration(_server(request).urls(request_base(request))))


async def openid_config(request: HttpRequest) -> HttpResponse:
    return _json(openid_configuration(_server(request).urls(request_base(request))))


async def jwks(request: HttpRequest) -> HttpResponse:
    await _server(request).fresh_keys()
    return _json(request.app.state.auth.keys.public_jwks())


async def preflight(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status_code=204, headers=PREFLIGHT)


async def token(request: HttpRequest) -> HttpResponse:
    return await _oauth(request, _server(request).token)


async def introspect(request: HttpRequest) -> HttpResponse:
    return await _oauth(request, _server(request).introspect)


async def revoke(request: HttpRequest) -> HttpResponse:
    return await _oauth(request, _server(request).revoke)


async def _oauth(request: HttpRequest, call: Any) -> HttpResponse:
    form, error = await _form(request)
    if error is not None:
        return _json({"error": "invalid_request", "error_description": error}, 400, NO_STORE)
    seen = observed.current()
    if seen is not None:  # the audit trail's agent: the client the request names
        seen.client = form.get("client_id") or _claimed_client(form.get("client_assertion"))
    status, body, headers = await call(form, dict(request.headers), request_base(request))
    return _json(body, status, {**headers, **NO_STORE})


def _claimed_client(assertion: str | None) -> str | None:
    """The `iss` a client assertion claims (unverified: for the audit record only)."""
    if not assertion or assertion.count(".") != 2:
        return None
    payload = assertion.split(".")[1]
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer[:200] if isinstance(issuer, str) else None


async def _form(request: HttpRequest) -> tuple[dict[str, str], str | None]:
    """The form body, or why it is not one (RFC 6749 §3.2: each parameter at most once)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM:
        return {}, f"the body must be {FORM}"
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return {}, "the form is too large"
    pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    form = dict(pairs)
    if len(form) != len(pairs):
        repeated = sorted({k for k, _ in pairs if sum(1 for p, _ in pairs if p == k) > 1})
        return {}, f"repeated parameter: {', '.join(repeated)}"
    return form, None


__all__ = ["Reply", "install"]
