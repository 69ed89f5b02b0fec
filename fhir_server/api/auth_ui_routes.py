"""The browser side of the authorization server over HTTP: the authorize endpoint (GET and
POST), sign-in, the patient and encounter pickers, consent, and the EHR-launch entry.

    GET|POST /auth/authorize        an app's authorize request -> the first step
    GET|POST /auth/login            sign in (CSRF, throttled)      POST /auth/logout
    GET|POST /auth/pick/patient     standalone launch: choose the patient
    GET|POST /auth/pick/encounter   standalone launch: choose the encounter
    GET|POST /auth/consent          the requested scopes in plain words; allow or deny
    GET|POST /auth/launch           an EHR (or admin) registers a launch and opens the app

The session cookie is HttpOnly, SameSite=Lax (the authorize redirect arrives from the app's
site, a top-level GET that must carry it), Secure when the request came over TLS, and
scoped to /auth. Every POST form needs the session's CSRF token; without it the answer is
403 and nothing changes. The logic lives in `fhir_server.auth.flow`; this module converts
requests and responses only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from starlette.datastructures import FormData
from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.responses import Response as HttpResponse

from fhir_server.auth import consent, flow, pickers
from fhir_server.auth.authorize import AuthorizeError, AuthorizeRedirectError, client_label
from fhir_server.auth.flow import AuthUi, FlowError, Transaction
from fhir_server.auth.launch import LaunchError, app_url, launch_redirect, parse_context
from fhir_server.auth.pages import render
from fhir_server.auth.sessions import COOKIE, Session
from fhir_server.auth.users import User, verify_password
from fhir_server.interactions import observed

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # No script at all; the form posts redirect to the app, so no form-action limit.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
}
CSRF_MESSAGE = (
    "This form has expired or did not come from this site. Go back, reload the page and try again."
)
LAUNCH_PARAMS = (
    "app",
    "patient",
    "encounter",
    "fhirContext",
    "need_patient_banner",
    "smart_style_url",
    "intent",
)
Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def install(app: FastAPI) -> None:
    """Add the /auth pages to `app` (its state's `auth_ui` is set by the lifespan)."""
    routes: list[tuple[str, Handler, list[str]]] = [
        ("/auth/authorize", authorize, ["GET", "POST"]),
        ("/auth/login", login_page, ["GET"]),
        ("/auth/login", login, ["POST"]),
        ("/auth/logout", logout, ["POST"]),
        ("/auth/pick/patient", patient_page, ["GET"]),
        ("/auth/pick/patient", pick_patient, ["POST"]),
        ("/auth/pick/encounter", encounter_page, ["GET"]),
        ("/auth/pick/encounter", pick_encounter, ["POST"]),
        ("/auth/consent", consent_page, ["GET"]),
        ("/auth/consent", decide, ["POST"]),
        ("/auth/launch", launch_page, ["GET"]),
        ("/auth/launch", create_launch, ["POST"]),
    ]
    for path, handler, methods in routes:
        app.add_api_route(path, _guarded(handler), methods=methods, include_in_schema=False)


def _guarded(handler: Handler) -> Handler:
    """Flow errors become pages; the authorize server's error redirects are followed."""

    async def run(request: HttpRequest) -> HttpResponse:
        try:
            return await handler(request)
        except AuthorizeRedirectError as exc:
            return redirect(exc.url, 302)
        except AuthorizeError as exc:
            return page("error.html", 400, title="Sign-in refused", message=exc.message)
        except flow.NotConfigured as exc:
            return page("error.html", 503, title="Not available", message=str(exc))
        except (FlowError, LaunchError) as exc:
            return page("error.html", 400, title="Cannot continue", message=str(exc))

    run.__name__ = handler.__name__
    return run


# -- responses ------------------------------------------------------------------------------


def page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(render(template, **values), status_code=status, headers=PAGE_HEADERS)


def redirect(url: str, status: int = 303) -> RedirectResponse:
    return RedirectResponse(url, status_code=status, headers=PAGE_HEADERS)


def ui_of(request: HttpRequest) -> AuthUi:
    ui: AuthUi = request.app.state.auth_ui
    return ui


def set_cookie(request: HttpRequest, response: HttpResponse, session: Session) -> None:
    ui = ui_of(request)
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=ui.sessions.lifetime,
        path="/auth",
        httponly=True,
        samesite="lax",
        secure=_tls(request, ui),
    )


def _tls(request: HttpRequest, ui: AuthUi) -> bool:
    base = ui.service.base_url or ""
    return request.url.scheme == "https" or base.startswith("https:")


def _step_url(step: flow.Step, tx: Transaction) -> str:
    return f"{flow.STEP_PATHS[step]}?{urlencode({'tx': tx.id})}"


def _address(request: HttpRequest) -> str:
    return request.client.host if request.client else "unknown"


def _fhir_base(request: HttpRequest, ui: AuthUi) -> str:
    return ui.service.base_url or str(request.base_url).rstrip("/") + "/fhir"


# -- sessions -------------------------------------------------------------------------------


async def _session(request: HttpRequest) -> Session | None:
    return await ui_of(request).sessions.load(request.cookies.get(COOKIE))


async def _session_or_new(request: HttpRequest) -> tuple[Session, bool]:
    """The browser's session, or a new one (True: the cookie must be set)."""
    session = await _session(request)
    if session is not None:
        return session, False
    return await ui_of(request).sessions.create(), True


async def _form_session(request: HttpRequest) -> tuple[FormData, Session | None]:
    """The posted form and the session, when the form's CSRF token is the session's."""
    form = await request.form()
    session = await _session(request)
    token = form.get("csrf_token")
    if session is None or not session.csrf_ok(token if isinstance(token, str) else None):
        return form, None
    return form, session


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _csrf_refused() -> HTMLResponse:
    return page("error.html", 403, title="Form refused", message=CSRF_MESSAGE)


# -- authorize ------------------------------------------------------------------------------


async def authorize(request: HttpRequest) -> HttpResponse:
    """The authorize endpoint (SMART "authorize-post": GET or a form POST). The request is
    checked, kept server-side, and the browser goes on to the first step by GET, which
    carries the session cookie (SameSite=Lax) even when the app posted cross-site."""
    ui = ui_of(request)
    if request.method == "POST":
        form = await request.form()
        pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    else:
        pairs = list(request.query_params.multi_items())
    params: dict[str, str] = {}
    for name, value in pairs:
        params.setdefault(name, value)
    base = _fhir_base(request, ui)
    await ui.auth_server().validate_authorize(params, request_base=base)
    tx = await flow.start(ui, params, base)
    return redirect(f"/auth/login?{urlencode({'tx': tx.id})}")


async def _proceed(
    request: HttpRequest, session: Session, tx: Transaction, here: flow.Step | None
) -> HttpResponse | None:
    """A redirect to the transaction's step when it is not `here`; None when it is."""
    step = await flow.next_step(
        ui_of(request), tx, await flow.current_user(ui_of(request), session)
    )
    return None if step == here else redirect(_step_url(step, tx))


# -- login ----------------------------------------------------------------------------------


async def login_page(request: HttpRequest) -> HttpResponse:
    ui = ui_of(request)
    session, fresh = await _session_or_new(request)
    tx_id = request.query_params.get("tx")
    user = await flow.current_user(ui, session)
    if tx_id:
        tx = await flow.load(ui, tx_id, session)
        response = await _proceed(request, session, tx, "login") or await _login_form(
            request, session, tx
        )
    elif user is not None:
        response = page("signed_in.html", title="Signed in", user=user.name, csrf=session.csrf)
    else:
        response = await _login_form(request, session, None)
    if fresh:
        set_cookie(request, response, session)
    return response


async def _login_form(
    request: HttpRequest,
    session: Session,
    tx: Transaction | None,
    status: int = 200,
    error: str | None = None,
    username: str = "",
) -> HTMLResponse:
    app = None
    if tx is not None:
        app = client_label(await flow.validated(ui_of(request), tx))
    return page(
        "login.html",
        status,
        title="Sign in",
        app=app,
        csrf=session.csrf,
        tx=tx.id if tx else "",
        error=error,
        username=username,
    )


async def login(request: HttpRequest) -> HttpResponse:
    """Check the password, throttled per user name and per client address."""
    ui = ui_of(request)
    form, session = await _form_session(request)
    if session is None:
        return _csrf_refused()
    tx_id = _field(form, "tx")
    tx = await flow.load(ui, tx_id, session) if tx_id else None
    name, password = _field(form, "username").strip(), _field(form, "password")
    seen = observed.current()
    if seen is not None:  # the audit trail's record of this sign-in names who tried
        seen.user = name[:200]
    if await ui.throttle.locked(name, _address(request)):
        minutes = max(1, round(ui.throttle.lockout / 60))
        return await _login_form(
            request,
            session,
            tx,
            429,
            username=name,
            error=(f"Too many failed sign-ins. Wait {minutes} minute(s) and try again."),
        )
    user = await ui.users.user_by_name(name)
    if not await verify_password(user, password) or user is None:
        await ui.throttle.failed(name, _address(request))
        return await _login_form(
            request, session, tx, 401, username=name, error="Wrong user name or password."
        )
    await ui.throttle.succeeded(name)
    session = await ui.sessions.sign_in(session, user.id)
    target = "/auth/login"
    if tx is not None:
        target = _step_url(await flow.next_step(ui, tx, user), tx)
    elif isinstance(session.extra.get("next"), str):
        target = session.extra.pop("next")
        await ui.sessions.save(session)
    response = redirect(target)
    set_cookie(request, response, session)
    return response


async def logout(request: HttpRequest) -> HttpResponse:
    _, session = await _form_session(request)
    if session is None:
        return _csrf_refused()
    await ui_of(request).sessions.end(session)
    response = redirect("/auth/login")
    response.delete_cookie(COOKIE, path="/auth")
    return response


# -- the pages of a transaction ----------------------------------------------------------


async def _signed_in_tx(
    request: HttpRequest, tx_id: str | None, session: Session | None
) -> tuple[Session, Transaction, User]:
    ui = ui_of(request)
    user = await flow.current_user(ui, session)
    if session is None or user is None:
        raise FlowError(
            "You are not signed in (or your session expired). Start again from the app."
        )
    return session, await flow.load(ui, tx_id, session), user


async def patient_page(request: HttpRequest) -> HttpResponse:
    session, tx, user = await _signed_in_tx(
        request, request.query_params.get("tx"), await _session(request)
    )
    moved = await _proceed(request, session, tx, "patient")
    if moved is not None:
        return moved
    return await _patient_form(request, session, tx, user, request.query_params.get("q", ""))


async def _patient_form(
    request: HttpRequest,
    session: Session,
    tx: Transaction,
    user: User,
    q: str,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    ui = ui_of(request)
    req = await flow.validated(ui, tx)
    choices = await pickers.patients(ui.service, user, q, _clinician_scope(ui))
    return page(
        "pick_patient.html",
        status,
        title="Choose a patient",
        app=client_label(req),
        tx=tx.id,
        csrf=session.csrf,
        q=q,
        choices=choices,
        error=error,
    )


def _clinician_scope(ui: AuthUi) -> str:
    return ui.settings.auth_clinician_scope


async def pick_patient(request: HttpRequest) -> HttpResponse:
    ui = ui_of(request)
    form, session = await _form_session(request)
    if session is None:
        return _csrf_refused()
    session, tx, user = await _signed_in_tx(request, _field(form, "tx"), session)
    choice = _field(form, "choice")
    offered = await pickers.patients(ui.service, user, "", _clinician_scope(ui), id_=choice)
    if not choice or not offered:
        return await _patient_form(
            request, session, tx, user, "", 400, "Choose one of the patients listed."
        )
    tx.patient, tx.encounter = choice, None
    await flow.save(ui, tx)
    return redirect(_step_url(await flow.next_step(ui, tx, user), tx))


async def encounter_page(request: HttpRequest) -> HttpResponse:
    session, tx, user = await _signed_in_tx(
        request, request.query_params.get("tx"), await _session(request)
    )
    moved = await _proceed(request, session, tx, "encounter")
    return moved or await _encounter_form(request, session, tx, user)


async def _encounter_form(
    request: HttpRequest,
    session: Session,
    tx: Transaction,
    user: User,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    ui = ui_of(request)
    req = await flow.validated(ui, tx)
    patient = await pickers.patient(ui.service, user, tx.patient or "")
    choices = await pickers.encounters(ui.service, user, tx.patient or "")
    return page(
        "pick_encounter.html",
        status,
        title="Choose an encounter",
        app=client_label(req),
        tx=tx.id,
        csrf=session.csrf,
        choices=choices,
        patient=patient.label if patient else tx.patient,
        error=error,
    )


async def pick_encounter(request: HttpRequest) -> HttpResponse:
    ui = ui_of(request)
    form, session = await _form_session(request)
    if session is None:
        return _csrf_refused()
    session, tx, user = await _signed_in_tx(request, _field(form, "tx"), session)
    choice = _field(form, "choice")
    offered = {c.id for c in await pickers.encounters(ui.service, user, tx.patient or "")}
    if choice not in offered:
        return await _encounter_form(
            request, session, tx, user, 400, "Choose one of the encounters listed."
        )
    tx.encounter = choice
    await flow.save(ui, tx)
    return redirect(_step_url(await flow.next_step(ui, tx, user), tx))


async def consent_page(request: HttpRequest) -> HttpResponse:
    ui = ui_of(request)
    session, tx, user = await _signed_in_tx(
        request, request.query_params.get("tx"), await _session(request)
    )
    moved = await _proceed(request, session, tx, "consent")
    if moved is not None:
        return moved
    req = await flow.validated(ui, tx)
    ctx = await flow.context(ui, tx, req, user)
    patient = (
        await pickers.patient(ui.service, user, ctx["patient"]) if ctx.get("patient") else None
    )
    lines = consent.choices(req.scopes, user.role)
    return page(
        "consent.html",
        title="Allow access?",
        app=client_label(req),
        tx=tx.id,
        csrf=session.csrf,
        user=user.name,
        patient=patient.label if patient else None,
        allowed=[line for line in lines if line.allowed],
        refused=[line for line in lines if not line.allowed],
    )


async def decide(request: HttpRequest) -> HttpResponse:
    """Allow (with the scopes left ticked) or deny; either way back to the app."""
    ui = ui_of(request)
    form, session = await _form_session(request)
    if session is None:
        return _csrf_refused()
    session, tx, user = await _signed_in_tx(request, _field(form, "tx"), session)
    if await flow.next_step(ui, tx, user) != "consent":
        raise FlowError("This sign-in is not ready for consent. Start again from the app.")
    server = ui.auth_server()
    req = await flow.validated(ui, tx)
    if _field(form, "decision") != "approve":
        await flow.finish(ui, tx)
        return redirect(server.deny(req))
    ticked = [v for v in form.getlist("scope") if isinstance(v, str)]
    scopes = consent.granted(req.scopes, user.role, ticked)
    url = await server.approve(
        req,
        user_id=user.id,
        fhir_user=user.fhir_user,
        role=user.role,
        scopes=scopes,
        context=await flow.context(ui, tx, req, user),
        request_base=tx.base,
    )
    await flow.finish(ui, tx)
    return redirect(url)


# -- EHR launch -----------------------------------------------------------------------------


def _launch_params(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in pairs if k in LAUNCH_PARAMS]


async def launch_page(request: HttpRequest) -> HttpResponse:
    """Confirm a launch: the signed-in user opens the app with this context."""
    ui = ui_of(request)
    session, fresh = await _session_or_new(request)
    params = _launch_params(list(request.query_params.multi_items()))
    user = await flow.current_user(ui, session)
    if user is None:  # sign in first, then come back here
        session.extra["next"] = "/auth/launch?" + urlencode(params)
        await ui.sessions.save(session)
        response: HttpResponse = await _login_form(request, session, None)
    else:
        response = await _launch_form(request, session, user, params)
    if fresh:
        set_cookie(request, response, session)
    return response


async def _launch_form(
    request: HttpRequest, session: Session, user: User, params: list[tuple[str, str]]
) -> HttpResponse:
    app, context = await _checked_launch(request, user, params)
    return page(
        "launch.html",
        title="Launch an app",
        app=app,
        csrf=session.csrf,
        params=params,
        patient=context.get("_patient_label"),
        encounter=context.get("encounter"),
    )


async def _checked_launch(
    request: HttpRequest, user: User, params: list[tuple[str, str]]
) -> tuple[str, dict[str, Any]]:
    """The app URL and the launch context, checked against the user's rights."""
    if user.role == "patient":
        raise FlowError("Patients launch apps from the app itself (standalone launch).")
    ui = ui_of(request)
    app = app_url(next((v for k, v in params if k == "app"), None))
    context = parse_context(params)
    if "patient" in context:
        patient = await pickers.patient(ui.service, user, context["patient"])
        if patient is None:
            raise LaunchError(f"Patient {context['patient']} is not one you may open.")
        context["_patient_label"] = patient.label
    return app, context


async def create_launch(request: HttpRequest) -> HttpResponse:
    ui = ui_of(request)
    form, session = await _form_session(request)
    user = await flow.current_user(ui, session)
    if session is None or user is None:
        return _csrf_refused()
    params = _launch_params([(k, v) for k, v in form.multi_items() if isinstance(v, str)])
    app, context = await _checked_launch(request, user, params)
    context.pop("_patient_label", None)
    launch = await ui.launches.create(user.id, app, context)
    return redirect(launch_redirect(app, _fhir_base(request, ui), launch.id))
