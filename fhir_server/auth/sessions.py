"""Browser sessions of the sign-in pages: server-side, behind an opaque cookie, with a CSRF
token.

The cookie holds only a random session id (256 bits); the store keeps the session under
the id's SHA-256, so a copy of the store gives no live cookie. Every form carries the
session's CSRF token (session-bound, compared in constant time). Signing in replaces the
session id (no session fixation); `bind` survives that, and ties an authorize transaction
to the browser that started it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from fhir_server.auth.users import UserStore

KIND = "session"
COOKIE = "fhir_auth_session"


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(slots=True)
class Session:
    """One browser's session: `user_id` once signed in, its CSRF token and bind value."""

    id: str
    csrf: str
    bind: str
    user_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())

    def data(self) -> dict[str, Any]:
        return {"csrf": self.csrf, "bind": self.bind, "user_id": self.user_id, "extra": self.extra}


class Sessions:
    """Sessions in a `UserStore`, each living `lifetime` seconds from its last save."""

    def __init__(self, store: UserStore, lifetime: int) -> None:
        self._store = store
        self.lifetime = lifetime

    async def load(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        data = await self._store.get_record(KIND, _key(session_id), time.time())
        if data is None:
            return None
        return Session(
            id=session_id,
            csrf=data["csrf"],
            bind=data["bind"],
            user_id=data.get("user_id"),
            extra=data.get("extra") or {},
        )

    async def create(self) -> Session:
        session = Session(id=new_token(), csrf=new_token(), bind=new_token())
        await self.save(session)
        return session

    async def save(self, session: Session) -> None:
        await self._store.put_record(
            KIND, _key(session.id), session.data(), time.time() + self.lifetime
        )

    async def sign_in(self, session: Session, user_id: str) -> Session:
        """The session under a new id and CSRF token, signed in as `user_id`."""
        await self._store.delete_record(KIND, _key(session.id))
        renewed = Session(
            id=new_token(),
            csrf=new_token(),
            bind=session.bind,
            user_id=user_id,
            extra=session.extra,
        )
        await self.save(renewed)
        return renewed

    async def end(self, session: Session) -> None:
        await self._store.delete_record(KIND, _key(session.id))
