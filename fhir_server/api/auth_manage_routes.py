"""HTTP adapter of dynamic client registration and the user's app-management page: the
`register` and `manage` URLs that discovery advertises.

    POST /auth/register   RFC 7591, behind a registration token: JSON in, JSON out
    GET  /auth/manage     the apps the signed-in user has authorized (sign in first)
    POST /auth/manage     revoke one of them (CSRF-protected form)

The page uses the sign-in pages' sessions, cookie and CSRF token: without a signed-in
session, GET remembers where to come back and sends the browser to /auth/login; a POST
without the session's CSRF token is 403 and changes nothing. The logic lives in
`fhir_server.auth.registration` and `fhir_server.auth.manage`.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse
from starlette.responses import Response as HttpResponse

from fhir_server.api.auth_token_routes import request_base
from fhir_server.api.auth_ui_routes import CSRF_MESSAGE, page, redirect, set_cookie, ui_of
from fhir_server.auth import flow, manage
from fhir_server.auth.server import SmartAuthServer
from fhir_server.auth.sessions import COOKIE, Session
from fhir_server.auth.store import AuthStore
from fhir_server.auth.users import User

MANAGE = "/auth/manage"
MAX_METADATA_BYTES = 64 * 1024


def install(app: FastAPI) -> None:
    """Add /auth/register and /auth/manage to `app`."""
    app.add_api_route("/auth/register", register, methods=["POST"], include_in_schema=False)
    app.add_api_route(MANAGE, manage_page, methods=["GET"], include_in_schema=False)
    app.add_api_route(MANAGE, revoke, methods=["POST"], include_in_schema=False)


# -- dynamic registration -----------------------------------------------------------------


async def register(request: HttpRequest) -> HttpResponse:
    server: SmartAuthServer = request.app.state.auth.server
    body = await request.body()
    if len(body) > MAX_METADATA_BYTES:
        return _json(
            {
                "error": "invalid_client_metadata",
                "error_description": "the client metadata is too large",
            },
            413,
        )
    status, reply, headers = await server.register(
        body, dict(request.headers), request_base(request)
    )
    return _json(reply, status, headers)


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> HttpResponse:
    headers = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
    return HttpResponse(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**headers, "Cache-Control": "no-store", "Pragma": "no-cache"},
    )


# -- the management page ------------------------------------------------------------------


async def manage_page(request: HttpRequest) -> HttpResponse:
    ui = ui_of(request)
    session = await ui.sessions.load(request.cookies.get(COOKIE))
    user = await flow.current_user(ui, session)
    if session is None or user is None:
        return await _sign_in_first(request, session)
    notice = session.extra.pop("notice", None)
    if notice is not None:
        await ui.sessions.save(session)
    return await _list(request, session, user, notice)


async def revoke(request: HttpRequest) -> HttpResponse:
    """Revoke one authorization of the signed-in user, then show the list again."""
    ui = ui_of(request)
    form = await request.form()
    session = await ui.sessions.load(request.cookies.get(COOKIE))
    token, family = form.get("csrf_token"), form.get("family")
    user = await flow.current_user(ui, session)
    if (
        session is None
        or user is None
        or not session.csrf_ok(token if isinstance(token, str) else None)
    ):
        return page("error.html", 403, title="Form refused", message=CSRF_MESSAGE)
    app = await manage.revoke(_store(request), user.id, family if isinstance(family, str) else "")
    if app is None:
        return await _list(
            request,
            session,
            user,
            None,
            404,
            "That app is not one you have authorized (or it was revoked).",
        )
    session.extra["notice"] = f"Access for {app.name} was revoked."
    await ui.sessions.save(session)
    return redirect(MANAGE)


async def _list(
    request: HttpRequest,
    session: Session,
    user: User,
    notice: str | None,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    apps = await manage.authorized_apps(_store(request), user.id)
    return page(
        "manage.html",
        status,
        title="Apps with access",
        user=user.name,
        csrf=session.csrf,
        apps=apps,
        notice=notice,
        error=error,
    )


async def _sign_in_first(request: HttpRequest, session: Session | None) -> HttpResponse:
    """To the sign-in page, which comes back here after a successful sign-in."""
    ui = ui_of(request)
    fresh = session is None
    session = session or await ui.sessions.create()
    session.extra["next"] = MANAGE
    await ui.sessions.save(session)
    response = redirect("/auth/login")
    if fresh:  # the same cookie as the sign-in pages set
        set_cookie(request, response, session)
    return response


def _store(request: HttpRequest) -> AuthStore:
    store: AuthStore = request.app.state.auth.store
    return store
