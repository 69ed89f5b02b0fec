"""AuthStore: what the authorization server remembers, on SQLite or MongoDB.

Kinds of records (each a small JSON document with an `id`):

    clients      registered apps and backend systems (`Client.to_doc`)
    users        people who log in (owned by `auth.users`)
    launches     EHR launch contexts (owned by `auth.launch`)
    keys         the server's signing keys (private JWKs; `auth.keys.KeyRing`)
    codes        authorization codes, by SHA-256 of the code: single use, short lived
    refresh      refresh tokens, by SHA-256 of the token, each in a family
    families     one per authorization (client, user, scope, when): revoked as a whole on
                 reuse or revocation, or by the user on the app-management page
    revoked      revoked access-token `jti`s until their `exp`
    assertions   client-assertion `jti`s already used (RFC 7523 replay store)
    registration initial access tokens for dynamic client registration (RFC 7591), by
                 SHA-256, until they expire
    cds_*        CDS Hooks clients, their used JWT `jti`s and the feedback on cards
                 (owned by `cds_hooks.store`)

Codes and tokens are stored hashed: a copy of the database does not let anyone redeem them.
Expired records are purged when records of the same kind are written (SQLite) or by a TTL
index (MongoDB); every read checks `expires` too, since neither purge is immediate.

The store is synchronous on purpose: authlib's OAuth 2.0 core is synchronous, and the token
endpoint runs it in a worker thread that calls the store directly. Callers on the event loop
use the `async` methods (`revoked_jtis_since`) or `asyncio.to_thread`. Both engines are
thread-safe (SQLite: one connection behind a lock, writes in `BEGIN IMMEDIATE`; PyMongo's
synchronous client is thread-safe). The SQLite file is `<database>.auth.db` beside the FHIR
database (or `FHIR_AUTH_DATABASE`); on MongoDB the collections are `auth_<kind>` in the
FHIR database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fhir_server.settings import Settings

KINDS = (
    "clients",
    "users",
    "launches",
    "keys",
    "codes",
    "refresh",
    "families",
    "revoked",
    "assertions",
    "registration",
    "cds_clients",
    "cds_jtis",
    "cds_feedback",
)


def digest(secret: str) -> str:
    """The id under which a code or refresh token is stored (never the token itself)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Documents(Protocol):
    """The storage port of the auth store: JSON documents by (kind, id)."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def insert(self, kind: str, doc: dict[str, Any]) -> bool:
        """Store `doc` (its `id`, optional `expires` epoch seconds); False if the id exists."""
        ...

    def get(self, kind: str, id: str) -> dict[str, Any] | None: ...

    def all(self, kind: str) -> list[dict[str, Any]]: ...

    def update(
        self, kind: str, id: str, changes: dict[str, Any], where: dict[str, Any] | None = None
    ) -> bool:
        """Set `changes` on the document if its fields equal `where` (atomically); True if
        it was changed."""
        ...

    def since(self, kind: str, field: str, t: float) -> list[dict[str, Any]]:
        """Documents whose numeric `field` is at least `t`."""
        ...

    def matching(self, kind: str, field: str, value: str) -> list[dict[str, Any]]:
        """Documents whose string `field` equals `value`."""
        ...

    def purge(self, kind: str, now: float) -> None:
        """Remove documents whose `expires` has passed."""
        ...


class SQLiteDocuments:
    """`Documents` in one SQLite table (`auth_docs`), WAL mode."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS auth_docs (kind TEXT NOT NULL, id TEXT NOT "
            "NULL, doc TEXT NOT NULL, expires REAL, PRIMARY KEY (kind, id))"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS auth_docs_expires ON auth_docs (kind, expires)")
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the auth store is not open")
        return self._conn

    def insert(self, kind: str, doc: dict[str, Any]) -> bool:
        with self._lock:
            try:
                self.conn.execute(
                    "INSERT INTO auth_docs VALUES (?, ?, ?, ?)",
                    (kind, doc["id"], json.dumps(doc), doc.get("expires")),
                )
            except sqlite3.IntegrityError:
                return False
            return True

    def get(self, kind: str, id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.conn.execute(
                "SELECT doc FROM auth_docs WHERE kind = ? AND id = ?", (kind, id)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def all(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT doc FROM auth_docs WHERE kind = ? ORDER BY rowid", (kind,)
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def update(
        self, kind: str, id: str, changes: dict[str, Any], where: dict[str, Any] | None = None
    ) -> bool:
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")  # another process's read-check-write waits
            try:
                row = conn.execute(
                    "SELECT doc FROM auth_docs WHERE kind = ? AND id = ?", (kind, id)
                ).fetchone()
                doc = json.loads(row[0]) if row else None
                if doc is None or any(doc.get(k) != v for k, v in (where or {}).items()):
                    conn.execute("COMMIT")
                    return False
                doc.update(changes)
                conn.execute(
                    "UPDATE auth_docs SET doc = ?, expires = ? WHERE kind = ? AND id = ?",
                    (json.dumps(doc), doc.get("expires"), kind, id),
                )
                conn.execute("COMMIT")
                return True
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def since(self, kind: str, field: str, t: float) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT doc FROM auth_docs WHERE kind = ? AND json_extract(doc, ?) >= ?",
                (kind, f"$.{field}", t),
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def matching(self, kind: str, field: str, value: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT doc FROM auth_docs WHERE kind = ? AND json_extract(doc, ?) = ?",
                (kind, f"$.{field}", value),
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def purge(self, kind: str, now: float) -> None:
        with self._lock:
            self.conn.execute("DELETE FROM auth_docs WHERE kind = ? AND expires < ?", (kind, now))


class MongoDocuments:
    """`Documents` in collections `auth_<kind>` of a (synchronous PyMongo) database."""

    def __init__(self, database: Any, *, owns_client: bool = False) -> None:
        self._db = database
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str) -> MongoDocuments:
        from pymongo import MongoClient

        client: Any = MongoClient(url)
        return cls(client.get_default_database(default="fhir"), owns_client=True)

    def open(self) -> None:
        for kind in KINDS:  # MongoDB deletes expired records itself (within a minute)
            self._db[f"auth_{kind}"].create_index([("expires_at", 1)], expireAfterSeconds=0)
        self._db["auth_families"].create_index([("user_id", 1)])  # the user's authorized apps

    def close(self) -> None:
        if self._owns_client:
            self._db.client.close()

    def insert(self, kind: str, doc: dict[str, Any]) -> bool:
        from pymongo.errors import DuplicateKeyError

        stored = {"_id": doc["id"], **doc}
        if doc.get("expires") is not None:
            stored["expires_at"] = datetime.fromtimestamp(doc["expires"], UTC)
        try:
            self._db[f"auth_{kind}"].insert_one(stored)
        except DuplicateKeyError:
            return False
        return True

    def get(self, kind: str, id: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = self._db[f"auth_{kind}"].find_one(
            {"_id": id}, {"_id": 0, "expires_at": 0}
        )
        return doc

    def all(self, kind: str) -> list[dict[str, Any]]:
        return list(self._db[f"auth_{kind}"].find({}, {"_id": 0, "expires_at": 0}))

    def update(
        self, kind: str, id: str, changes: dict[str, Any], where: dict[str, Any] | None = None
    ) -> bool:
        result = self._db[f"auth_{kind}"].update_one(
            {"_id": id, **(where or {})}, {"$set": changes}
        )
        return bool(result.matched_count)

    def since(self, kind: str, field: str, t: float) -> list[dict[str, Any]]:
        return list(
            self._db[f"auth_{kind}"].find({field: {"$gte": t}}, {"_id": 0, "expires_at": 0})
        )

    def matching(self, kind: str, field: str, value: str) -> list[dict[str, Any]]:
        return list(self._db[f"auth_{kind}"].find({field: value}, {"_id": 0, "expires_at": 0}))

    def purge(self, kind: str, now: float) -> None:
        self._db[f"auth_{kind}"].delete_many({"expires": {"$lt": now}})


def auth_database(settings: Settings) -> str:
    """Where the auth store lives: FHIR_AUTH_DATABASE, else beside the FHIR database."""
    if settings.auth_database:
        return settings.auth_database
    if settings.storage == "mongodb":
        return settings.database
    return settings.database + ".auth.db"


class AuthStore:
    """Clients, users, keys, codes, refresh-token families, revoked and used `jti`s."""

    def __init__(self, documents: Documents) -> None:
        self.documents = documents

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthStore:
        where = auth_database(settings)
        if where.startswith(("mongodb://", "mongodb+srv://")):
            return cls(MongoDocuments.from_url(where))
        return cls(SQLiteDocuments(where))

    def open(self) -> None:
        self.documents.open()

    def close(self) -> None:
        self.documents.close()

    # -- clients and users -------------------------------------------------------------

    def add_client(self, doc: dict[str, Any]) -> None:
        if not self.documents.insert("clients", doc):
            raise ValueError(f"client {doc['id']} already exists")

    def get_client(self, client_id: str) -> dict[str, Any] | None:
        doc = self.documents.get("clients", client_id)
        return None if doc is None or doc.get("removed") else doc

    def list_clients(self) -> list[dict[str, Any]]:
        return [doc for doc in self.documents.all("clients") if not doc.get("removed")]

    def remove_client(self, client_id: str) -> bool:
        """Mark the client removed (its id is never reused); False if there is none."""
        return self.documents.update(
            "clients", client_id, {"removed": True}, where={"removed": False}
        )

    def put_user(self, doc: dict[str, Any]) -> bool:
        return self.documents.insert("users", doc)

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        return self.documents.get("users", user_id)

    # -- signing keys ------------------------------------------------------------------

    def add_key(self, doc: dict[str, Any]) -> None:
        self.documents.insert("keys", doc)

    def keys(self) -> list[dict[str, Any]]:
        """Every stored key that has not expired, oldest first."""
        now = time.time()
        return [k for k in self.documents.all("keys") if k["expires"] > now]

    # -- authorization codes -----------------------------------------------------------

    def save_code(self, code: str, doc: dict[str, Any]) -> None:
        self.documents.purge("codes", time.time())
        self.documents.insert("codes", {**doc, "id": digest(code), "used": False})

    def consume_code(self, code: str) -> tuple[dict[str, Any] | None, bool]:
        """(the code's record, False) the first time; (record, True) when it was already
        used (the caller revokes what it gave); (None, False) when unknown or expired."""
        doc = self.documents.get("codes", digest(code))
        if doc is None or doc["expires"] <= time.time():
            return None, False
        if not self.documents.update("codes", doc["id"], {"used": True}, where={"used": False}):
            return doc, True
        return doc, False

    # -- refresh tokens and their families ---------------------------------------------

    def new_family(
        self,
        family: str,
        client_id: str,
        expires: float,
        *,
        user_id: str | None = None,
        scope: str | None = None,
    ) -> None:
        """A new authorization: `client_id`, the user who approved it and what they granted
        (what the user's app-management page lists)."""
        self.documents.purge("families", time.time())
        self.documents.insert(
            "families",
            {
                "id": family,
                "client_id": client_id,
                "user_id": user_id,
                "scope": scope,
                "created": time.time(),
                "revoked": False,
                "jtis": {},
                "expires": expires,
            },
        )

    def user_families(self, user_id: str) -> list[dict[str, Any]]:
        """The live authorizations (unrevoked, unexpired families) `user_id` approved,
        oldest first."""
        now = time.time()
        docs = [
            doc
            for doc in self.documents.matching("families", "user_id", user_id)
            if not doc["revoked"] and doc["expires"] > now
        ]
        return sorted(docs, key=lambda doc: doc.get("created", 0.0))

    def family(self, family: str) -> dict[str, Any] | None:
        return self.documents.get("families", family)

    def family_issued(self, family: str, jti: str, exp: float, until: float) -> None:
        """Remember an access token issued in the family, to revoke it with the family; the
        family is kept at least `until` (its newest refresh token's expiry)."""
        doc = self.family(family)
        if doc is not None:
            jtis = {k: v for k, v in doc["jtis"].items() if v > time.time()}
            self.documents.update(
                "families",
                family,
                {"jtis": {**jtis, jti: exp}, "expires": max(doc["expires"], until)},
            )

    def revoke_family(self, family: str) -> None:
        """Revoke every refresh token of the family and the access tokens issued in it."""
        doc = self.family(family)
        if doc is None:
            return
        self.documents.update("families", family, {"revoked": True})
        for jti, exp in doc["jtis"].items():
            self.revoke_jti(jti, exp)

    def save_refresh(self, token: str, doc: dict[str, Any]) -> None:
        self.documents.purge("refresh", time.time())
        self.documents.insert("refresh", {**doc, "id": digest(token), "used": False})

    def find_refresh(self, token: str) -> dict[str, Any] | None:
        """The refresh token's record while it is valid: unexpired, unused, family live.
        A used token presented again revokes its family (RFC 9700 §4.14.2)."""
        doc = self.documents.get("refresh", digest(token))
        if doc is None or doc["expires"] <= time.time():
            return None
        family = self.family(doc["family"])
        if doc["used"] or family is None or family["revoked"]:
            self.revoke_family(doc["family"])
            return None
        return doc

    def consume_refresh(self, token: str) -> dict[str, Any] | None:
        """Use a refresh token once (rotation). A reused or revoked-family token revokes
        the whole family (RFC 9700 §4.14.2) and returns None."""
        doc = self.documents.get("refresh", digest(token))
        if doc is None or doc["expires"] <= time.time():
            return None
        family = self.family(doc["family"])
        used_now = self.documents.update(
            "refresh", doc["id"], {"used": True}, where={"used": False}
        )
        if not used_now or family is None or family["revoked"]:
            self.revoke_family(doc["family"])
            return None
        return doc

    # -- revoked access tokens and used assertions -------------------------------------

    def revoke_jti(self, jti: str, exp: float) -> None:
        self.documents.purge("revoked", time.time())
        self.documents.insert("revoked", {"id": jti, "expires": exp, "revoked_at": time.time()})

    def is_revoked(self, jti: str) -> bool:
        return self.documents.get("revoked", jti) is not None

    async def revoked_jtis_since(self, t: float) -> list[str]:
        """The `jti`s revoked at or after `t` (epoch seconds) and not yet expired: what a
        resource server adds to its in-memory revocation set."""
        docs = await asyncio.to_thread(self.documents.since, "revoked", "revoked_at", t)
        now = time.time()
        return [doc["id"] for doc in docs if doc["expires"] > now]

    def use_assertion(self, client_id: str, jti: str, exp: float) -> bool:
        """Record a client assertion's `jti`; False if this client already used it."""
        self.documents.purge("assertions", time.time())
        return self.documents.insert("assertions", {"id": f"{client_id} {jti}", "expires": exp})

    # -- initial access tokens of dynamic registration ---------------------------------

    def save_registration_token(self, token: str, expires: float) -> None:
        self.documents.purge("registration", time.time())
        self.documents.insert(
            "registration", {"id": digest(token), "expires": expires, "created": time.time()}
        )

    def registration_token_ok(self, token: str) -> bool:
        """Whether `token` is an unexpired registration token. It is found by its SHA-256,
        like codes and refresh tokens: a lookup's timing can tell something about the hash
        of a guess, nothing about a stored token, so no separate constant-time comparison
        adds anything."""
        doc = self.documents.get("registration", digest(token))
        return doc is not None and doc["expires"] > time.time()
