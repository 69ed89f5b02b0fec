"""EHR launches: the context an EHR (or an admin) registers before it opens an app.

SMART App Launch 2.2, EHR launch: "the EHR ... launches the app with a `launch` parameter
... an opaque identifier for this specific launch and any EHR context associated with it."
`/auth/launch` creates one (`Launches.create`) and sends the browser to the app's launch URL
with `iss` and `launch`; the authorize request then names it, and its context (patient,
encounter, fhirContext, need_patient_banner, smart_style_url, intent) goes into the token
response. A launch belongs to the user who created it and lives 10 minutes.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from fhir_server.auth.users import UserStore

KIND = "launch"
LIFETIME = 600.0
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


class LaunchError(ValueError):
    """A launch request that cannot be honoured; the message names the parameter."""


@dataclass(frozen=True, slots=True)
class Launch:
    """A registered launch: who created it, the app's launch URL, and its context."""

    id: str
    user_id: str
    app: str
    context: dict[str, Any]


def parse_context(params: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The launch context from `/auth/launch`'s parameters: `patient`, `encounter` (ids),
    `fhirContext` (a reference `Type/id` or a JSON object, repeatable),
    `need_patient_banner` (true/false), `smart_style_url`, `intent`."""
    context: dict[str, Any] = {}
    for name, value in params:
        value = value.strip()
        if not value:
            continue
        if name in ("patient", "encounter"):
            context[name] = _resource_id(name, value)
        elif name == "fhirContext":
            context.setdefault("fhirContext", []).append(_fhir_context(value))
        elif name == "need_patient_banner":
            if value not in ("true", "false"):
                raise LaunchError("need_patient_banner must be true or false")
            context[name] = value == "true"
        elif name == "smart_style_url":
            context[name] = _http_url(name, value)
        elif name == "intent":
            context[name] = value[:200]
    return context


def _resource_id(name: str, value: str) -> str:
    id_ = value.rsplit("/", 1)[-1]
    if not id_ or len(id_) > 64 or not set(id_) <= _ID_CHARS:
        raise LaunchError(f"{name} must be a resource id, not {value!r}")
    return id_


def _fhir_context(value: str) -> dict[str, Any]:
    if value.startswith("{"):
        try:
            item = json.loads(value)
        except ValueError as exc:
            raise LaunchError("fhirContext is not valid JSON") from exc
        if not isinstance(item, dict) or not ({"reference", "canonical", "identifier"} & set(item)):
            raise LaunchError("a fhirContext object needs reference, canonical or identifier")
        return item
    type_, _, id_ = value.partition("/")
    if not type_.isalpha() or not id_:
        raise LaunchError(f"fhirContext must be Type/id or a JSON object, not {value!r}")
    return {"reference": f"{type_}/{_resource_id('fhirContext', id_)}"}


def _http_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LaunchError(f"{name} must be an absolute http(s) URL")
    return value


def app_url(value: str | None) -> str:
    """The app's launch URL: absolute http(s), no fragment."""
    if not value:
        raise LaunchError("app (the app's launch URL) is required")
    url = _http_url("app", value)
    if urlsplit(url).fragment:
        raise LaunchError("app must not have a fragment")
    return url


def launch_redirect(app: str, iss: str, launch_id: str) -> str:
    """The app's launch URL with `iss` and `launch` added to its query."""
    separator = "&" if urlsplit(app).query else "?"
    return app + separator + urlencode({"iss": iss, "launch": launch_id})


class Launches:
    """Launches in a `UserStore`."""

    def __init__(self, store: UserStore) -> None:
        self._store = store

    async def create(self, user_id: str, app: str, context: dict[str, Any]) -> Launch:
        launch = Launch(id=secrets.token_urlsafe(16), user_id=user_id, app=app, context=context)
        data = {"user_id": user_id, "app": app, "context": context}
        await self._store.put_record(KIND, launch.id, data, time.time() + LIFETIME)
        return launch

    async def get(self, launch_id: str) -> Launch | None:
        if not launch_id or len(launch_id) > 100:
            return None
        data = await self._store.get_record(KIND, launch_id, time.time())
        if data is None:
            return None
        return Launch(
            id=launch_id, user_id=data["user_id"], app=data["app"], context=dict(data["context"])
        )
