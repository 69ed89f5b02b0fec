"""The browser side of an authorize request, step by step: sign in, pick a patient, pick an
encounter, consent. Framework-free; `fhir_server.api.auth_ui_routes` serves it over HTTP.

An authorize request becomes a transaction (its parameters, kept server-side for the
session's lifetime) whose id travels in the pages' URLs and forms. The first browser that
opens it binds it to its session; another browser cannot continue it. Each page asks
`next_step` where the transaction stands, so no step can be skipped by typing a URL, and
the request is validated again before each step (a client removed meanwhile stops there),
against the FHIR base URL the browser first reached the pages at (the request's `aud` must
name it).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from fhir_server.auth import pickers
from fhir_server.auth.authorize import AuthorizationServer, AuthorizeRequestView
from fhir_server.auth.launch import Launches
from fhir_server.auth.sessions import Session, Sessions
from fhir_server.auth.users import Throttle, User, UserStore
from fhir_server.interactions.service import FhirService
from fhir_server.settings import Settings

KIND = "authorize"
Step = Literal["login", "patient", "encounter", "consent"]
STEP_PATHS: dict[Step, str] = {
    "login": "/auth/login",
    "patient": "/auth/pick/patient",
    "encounter": "/auth/pick/encounter",
    "consent": "/auth/consent",
}


class FlowError(Exception):
    """A transaction that cannot go on; the message is shown to the user."""


class NotConfigured(FlowError):
    """No authorization server is plugged in."""


@dataclass(slots=True)
class AuthUi:
    """What the sign-in pages work with (built once per app)."""

    settings: Settings
    service: FhirService
    users: UserStore
    sessions: Sessions
    throttle: Throttle
    launches: Launches
    server: AuthorizationServer | None

    @classmethod
    def build(
        cls,
        settings: Settings,
        service: FhirService,
        users: UserStore,
        server: AuthorizationServer | None,
    ) -> AuthUi:
        return cls(
            settings,
            service,
            users,
            Sessions(users, settings.auth_session_lifetime),
            Throttle(users, settings.auth_login_attempts, settings.auth_login_lockout),
            Launches(users),
            server,
        )

    def auth_server(self) -> AuthorizationServer:
        if self.server is None:
            raise NotConfigured("SMART authorization is not set up on this server.")
        return self.server


@dataclass(slots=True)
class Transaction:
    """A pending authorize request and what the user picked so far."""

    id: str
    params: dict[str, str]
    base: str = ""
    bind: str | None = None
    patient: str | None = None
    encounter: str | None = None

    def data(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "base": self.base,
            "bind": self.bind,
            "patient": self.patient,
            "encounter": self.encounter,
        }


async def start(ui: AuthUi, params: dict[str, str], base: str) -> Transaction:
    """A new transaction for a validated authorize request that reached the FHIR base
    `base`."""
    tx = Transaction(id=secrets.token_urlsafe(16), params=params, base=base)
    await save(ui, tx)
    return tx


async def validated(ui: AuthUi, tx: Transaction) -> AuthorizeRequestView:
    """The transaction's authorize request, checked again (the client may be gone)."""
    return await ui.auth_server().validate_authorize(tx.params, request_base=tx.base)


async def save(ui: AuthUi, tx: Transaction) -> None:
    await ui.users.put_record(KIND, tx.id, tx.data(), time.time() + ui.sessions.lifetime)


async def finish(ui: AuthUi, tx: Transaction) -> None:
    await ui.users.delete_record(KIND, tx.id)


async def load(ui: AuthUi, tx_id: str | None, session: Session) -> Transaction:
    """The transaction `tx_id` for this browser; binds it on first use."""
    data = await ui.users.get_record(KIND, tx_id, time.time()) if tx_id else None
    if data is None or tx_id is None:
        raise FlowError("This sign-in has expired or is unknown. Start again from the app.")
    tx = Transaction(
        id=tx_id,
        params=dict(data["params"]),
        base=data.get("base", ""),
        bind=data.get("bind"),
        patient=data.get("patient"),
        encounter=data.get("encounter"),
    )
    if tx.bind is None:
        tx.bind = session.bind
        await save(ui, tx)
    elif not secrets.compare_digest(tx.bind, session.bind):
        raise FlowError("This sign-in was started in another browser. Start again from the app.")
    return tx


async def current_user(ui: AuthUi, session: Session | None) -> User | None:
    if session is None or session.user_id is None:
        return None
    return await ui.users.user_by_id(session.user_id)


async def next_step(ui: AuthUi, tx: Transaction, user: User | None) -> Step:
    """Where the transaction stands for this user."""
    if user is None:
        return "login"
    req = await validated(ui, tx)
    if req.launch or user.role == "patient":
        return "consent"  # the context is the EHR's, or the patient's own
    scopes = set(req.scopes)
    if {"launch/patient", "launch/encounter"} & scopes and not tx.patient:
        return "patient"
    if "launch/encounter" in scopes and not tx.encounter:
        return "encounter"
    return "consent"


async def context(
    ui: AuthUi, tx: Transaction, req: AuthorizeRequestView, user: User
) -> dict[str, Any]:
    """The launch context the token response will carry, checked against the user's
    rights."""
    if req.launch:
        return await _ehr_context(ui, req.launch, user)
    if user.role == "patient":
        patient = await pickers.own_patient(ui.service, user)
        if patient is None:
            raise FlowError("Your account is not linked to a patient record.")
        return {"patient": patient}
    scopes = set(req.scopes)
    ctx: dict[str, Any] = {}
    if "launch/patient" in scopes and tx.patient:
        ctx["patient"] = tx.patient
    if "launch/encounter" in scopes and tx.encounter:
        ctx["encounter"] = tx.encounter
    return ctx


async def _ehr_context(ui: AuthUi, launch_id: str, user: User) -> dict[str, Any]:
    launch = await ui.launches.get(launch_id)
    if launch is None or not secrets.compare_digest(launch.user_id, user.id):
        raise FlowError(
            "This launch is unknown, has expired, or belongs to another user. "
            "Launch the app again from the EHR."
        )
    patient = launch.context.get("patient")
    if patient and await pickers.patient(ui.service, user, patient) is None:
        raise FlowError("The launch's patient is not one you may open.")
    return dict(launch.context)
