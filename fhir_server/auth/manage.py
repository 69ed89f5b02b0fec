"""The apps a user has authorized, and revoking one: what the `manage` page shows (SMART
App Launch 2.2, `management_endpoint`: "URL where an end-user can view which applications
currently have access to data and can make adjustments to these access rights").

Each approval on the consent page starts a refresh-token family in the AuthStore (client,
user, granted scope, when). A live family is one authorized app; revoking it revokes its
refresh tokens (the next refresh is `invalid_grant`) and the access tokens issued in it
(their `jti`s, which resource servers pick up with their revocation refresh). A user sees
and revokes only their own families. Framework-free; `fhir_server.api.auth_manage_routes`
serves it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_server.auth.consent import describe
from fhir_server.auth.store import AuthStore


@dataclass(frozen=True, slots=True)
class Permission:
    """One granted scope, in plain words and as the scope string."""

    scope: str
    text: str


@dataclass(frozen=True, slots=True)
class AuthorizedApp:
    """One live authorization of the user, as the page lists it."""

    family: str
    client_id: str
    name: str
    granted: str  # when, e.g. "2026-03-01 14:05 UTC"
    permissions: list[Permission]


async def authorized_apps(store: AuthStore, user_id: str) -> list[AuthorizedApp]:
    """The user's live authorizations, oldest first."""
    return await asyncio.to_thread(_authorized_apps, store, user_id)


async def revoke(store: AuthStore, user_id: str, family: str) -> AuthorizedApp | None:
    """Revoke the user's authorization `family`; the app it was, or None when `family` is
    not a live authorization of this user (nothing is changed then)."""
    return await asyncio.to_thread(_revoke, store, user_id, family)


def _authorized_apps(store: AuthStore, user_id: str) -> list[AuthorizedApp]:
    return [_app(store, doc) for doc in store.user_families(user_id)]


def _revoke(store: AuthStore, user_id: str, family: str) -> AuthorizedApp | None:
    mine = {doc["id"]: doc for doc in store.user_families(user_id)}
    doc = mine.get(family)
    if doc is None:
        return None
    store.revoke_family(family)
    return _app(store, doc)


def _app(store: AuthStore, doc: dict[str, Any]) -> AuthorizedApp:
    client = store.get_client(doc["client_id"])
    name = str(client["name"]) if client else f"{doc['client_id']} (no longer registered)"
    scopes = list(dict.fromkeys(str(doc.get("scope") or "").split()))
    when = datetime.fromtimestamp(doc.get("created", 0.0), UTC).strftime("%Y-%m-%d %H:%M UTC")
    return AuthorizedApp(
        family=doc["id"],
        client_id=doc["client_id"],
        name=name,
        granted=when,
        permissions=[Permission(s, describe(s)) for s in scopes],
    )
