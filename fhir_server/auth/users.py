"""The people who sign in to the authorization server: users, passwords, login throttling.

A user has a name, an argon2id password hash (argon2-cffi; never the password), a role
(`fhir_server.auth.roles`) and the FHIR resource they are (`Practitioner/123`,
`Patient/7`, `RelatedPerson/4`), which becomes the `fhirUser` of the tokens they approve.

`UserStore` is the storage the sign-in pages need: users, the failed-login counters that
throttle password guessing, the server-side browser sessions and the EHR launches. Two
implementations, like the FHIR storage engines: SQLite (the auth database file
`<database>.auth.db`, or `FHIR_AUTH_DATABASE`; `users_sqlite.py`) and MongoDB (collections
`auth_*` in the FHIR database; `users_mongodb.py`). All of it is shared by every worker
process, so throttling and sessions hold behind `serve --workers N`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fhir_server.auth.roles import ROLES
from fhir_server.settings import Settings
from fhir_server.storage.base import Storage

FHIR_USER_TYPES = ("Practitioner", "Patient", "RelatedPerson", "Person")

_hasher = PasswordHasher()
# Verified when the user name is unknown, so that a wrong name costs as much as a wrong
# password and the answer's timing does not tell which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user that cannot be added: a bad name, role or fhirUser, or a taken name."""


@dataclass(frozen=True, slots=True)
class User:
    """One account. `id` is stable (the tokens' `sub`); `name` is what the user types."""

    id: str
    name: str
    role: str
    fhir_user: str | None
    password_hash: str
    created: float

    def public(self) -> dict[str, Any]:
        """What `auth user list` shows: everything but the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "fhir_user": self.fhir_user,
            "created": self.created,
        }


class UserStore(Protocol):
    """Users and the sign-in pages' shared state. Times are Unix seconds."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def add_user(self, user: User) -> None:
        """Store a new user; `UserError` when the name is taken."""

    async def user_by_name(self, name: str) -> User | None: ...

    async def user_by_id(self, user_id: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def remove_user(self, name: str) -> bool:
        """True when a user of that name existed."""

    async def count_failure(self, key: str, now: float, window: float) -> int:
        """Add one failed login to `key`'s counter (restarted when its last failure is older
        than `window`) and return the new count."""

    async def failures(self, key: str, now: float, window: float) -> int:
        """`key`'s failed logins within `window` of the last one (0 when older)."""

    async def clear_failures(self, key: str) -> None: ...

    async def put_record(self, kind: str, key: str, data: dict[str, Any], expires: float) -> None:
        """Store (or replace) a short-lived record: a browser session or an EHR launch."""

    async def get_record(self, kind: str, key: str, now: float) -> dict[str, Any] | None:
        """The record, or None when missing or expired."""

    async def delete_record(self, kind: str, key: str) -> None: ...


def new_user(name: str, password: str, role: str, fhir_user: str | None) -> User:
    """A checked `User` with a fresh id and the password's argon2id hash."""
    name = name.strip()
    if not name or len(name) > 100 or any(c.isspace() for c in name):
        raise UserError("a user name is 1 to 100 characters without spaces")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; one of: {', '.join(ROLES)}")
    if fhir_user is not None:
        check_fhir_user(fhir_user)
    if role == "patient" and not (fhir_user or "").startswith(("Patient/", "RelatedPerson/")):
        raise UserError("a patient user needs --fhir-user Patient/<id> or RelatedPerson/<id>")
    if len(password) < 8:
        raise UserError("the password needs at least 8 characters")
    return User(
        id=secrets.token_hex(16),
        name=name,
        role=role,
        fhir_user=fhir_user,
        password_hash=_hasher.hash(password),
        created=time.time(),
    )


def check_fhir_user(reference: str) -> None:
    """`Type/id` where Type is Practitioner, Patient, RelatedPerson or Person."""
    type_, _, id_ = reference.partition("/")
    if type_ not in FHIR_USER_TYPES or not id_ or "/" in id_:
        raise UserError(
            f"--fhir-user must be one of {', '.join(FHIR_USER_TYPES)} as Type/id, not {reference!r}"
        )


async def verify_password(user: User | None, password: str) -> bool:
    """Whether `password` is `user`'s; as slow for an unknown user as for a wrong password.
    argon2 takes tens of milliseconds of CPU: it runs in a thread, off the event loop."""
    stored = user.password_hash if user else _DUMMY_HASH
    try:
        await asyncio.to_thread(_hasher.verify, stored, password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None


class Throttle:
    """Login throttling: after `attempts` failures for one user name (or `attempts` × 4 from
    one client address) within `lockout` seconds, every login for it is refused until
    `lockout` seconds after the last failure, the right password included."""

    def __init__(self, store: UserStore, attempts: int, lockout: float) -> None:
        self._store = store
        self._attempts = attempts
        self._lockout = lockout

    def _limits(self, name: str, address: str) -> list[tuple[str, int]]:
        return [(f"user:{name.lower()}", self._attempts), (f"addr:{address}", self._attempts * 4)]

    async def locked(self, name: str, address: str) -> bool:
        now = time.time()
        for key, limit in self._limits(name, address):
            if await self._store.failures(key, now, self._lockout) >= limit:
                return True
        return False

    async def failed(self, name: str, address: str) -> None:
        now = time.time()
        for key, _ in self._limits(name, address):
            await self._store.count_failure(key, now, self._lockout)

    async def succeeded(self, name: str) -> None:
        await self._store.clear_failures(f"user:{name.lower()}")

    @property
    def lockout(self) -> float:
        return self._lockout


def auth_database_path(settings: Settings) -> str:
    """The SQLite auth database: `FHIR_AUTH_DATABASE`, else `<database>.auth.db`."""
    configured: str | None = getattr(settings, "auth_database", None)
    return configured or f"{settings.database}.auth.db"


def make_user_store(settings: Settings, storage: Storage | None = None) -> UserStore:
    """The store beside the FHIR data: MongoDB collections when the FHIR storage is MongoDB
    (in `storage`'s database when given), else the SQLite auth database file."""
    if settings.storage == "mongodb" or _mongo_database(storage) is not None:
        from fhir_server.auth.users_mongodb import MongoUserStore

        database = _mongo_database(storage)
        if database is not None:
            return MongoUserStore(database)
        return MongoUserStore.from_url(settings.database)
    from fhir_server.auth.users_sqlite import SQLiteUserStore

    return SQLiteUserStore(auth_database_path(settings))


def _mongo_database(storage: Storage | None) -> Any:
    # The MongoDB engine keeps its database object private; the auth collections live in
    # the same database, so borrow it rather than opening a second client.
    from fhir_server.storage.mongodb import MongoStorage

    return storage._db if isinstance(storage, MongoStorage) else None


@asynccontextmanager
async def open_user_store(
    settings: Settings, storage: Storage | None = None
) -> AsyncIterator[UserStore]:
    """An opened `UserStore` for the settings, closed when the block ends."""
    store = make_user_store(settings, storage)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
