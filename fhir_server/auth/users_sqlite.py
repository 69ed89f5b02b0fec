"""`UserStore` on SQLite: the auth database file, beside the FHIR database.

Tables: `auth_users` (one row per user), `auth_login_failures` (failed-login counters by
key), `auth_records` (sessions and EHR launches: kind, key, JSON data, expiry). One
connection in WAL mode, used from a worker thread under a lock: every statement is a
single short write or read, and several server processes may share the file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fhir_server.auth.users import User, UserError

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS auth_users (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, role TEXT NOT NULL,
    fhir_user TEXT, password_hash TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS auth_login_failures (
    key TEXT PRIMARY KEY, count INTEGER NOT NULL, last REAL NOT NULL);
CREATE TABLE IF NOT EXISTS auth_records (
    kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (kind, key));
CREATE INDEX IF NOT EXISTS auth_records_expires ON auth_records (expires);
"""
_USER_COLUMNS = "id, name, role, fhir_user, password_hash, created"


class SQLiteUserStore:
    """The `UserStore` in the SQLite file `path`."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("the user store is not open")

        def locked() -> T:
            with self._lock:
                return work(conn)

        return await asyncio.to_thread(locked)

    # -- users ------------------------------------------------------------------------

    async def add_user(self, user: User) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO auth_users ({_USER_COLUMNS}) VALUES (?,?,?,?,?,?)",
                    (
                        user.id,
                        user.name,
                        user.role,
                        user.fhir_user,
                        user.password_hash,
                        user.created,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise UserError(f"a user named {user.name!r} exists already") from exc

        await self._run(insert)

    async def user_by_name(self, name: str) -> User | None:
        return await self._one("name = ?", name)

    async def user_by_id(self, user_id: str) -> User | None:
        return await self._one("id = ?", user_id)

    async def _one(self, where: str, value: str) -> User | None:
        sql = f"SELECT {_USER_COLUMNS} FROM auth_users WHERE {where}"
        row = await self._run(lambda conn: conn.execute(sql, (value,)).fetchone())
        return User(*row) if row else None

    async def list_users(self) -> list[User]:
        sql = f"SELECT {_USER_COLUMNS} FROM auth_users ORDER BY name"
        rows = await self._run(lambda conn: conn.execute(sql).fetchall())
        return [User(*row) for row in rows]

    async def remove_user(self, name: str) -> bool:
        cursor = await self._run(
            lambda conn: conn.execute("DELETE FROM auth_users WHERE name = ?", (name,))
        )
        return cursor.rowcount > 0

    # -- login failures ---------------------------------------------------------------

    async def count_failure(self, key: str, now: float, window: float) -> int:
        # One statement: concurrent failures from several processes all count.
        sql = (
            "INSERT INTO auth_login_failures (key, count, last) VALUES (?, 1, ?) "
            "ON CONFLICT (key) DO UPDATE SET "
            "count = CASE WHEN excluded.last - last > ? THEN 1 ELSE count + 1 END, "
            "last = excluded.last RETURNING count"
        )
        row = await self._run(lambda conn: conn.execute(sql, (key, now, window)).fetchone())
        return int(row[0])

    async def failures(self, key: str, now: float, window: float) -> int:
        sql = "SELECT count FROM auth_login_failures WHERE key = ? AND last >= ?"
        row = await self._run(lambda conn: conn.execute(sql, (key, now - window)).fetchone())
        return int(row[0]) if row else 0

    async def clear_failures(self, key: str) -> None:
        await self._run(
            lambda conn: conn.execute("DELETE FROM auth_login_failures WHERE key = ?", (key,))
        )

    # -- sessions and launches --------------------------------------------------------

    async def put_record(self, kind: str, key: str, data: dict[str, Any], expires: float) -> None:
        sql = "INSERT OR REPLACE INTO auth_records (kind, key, data, expires) VALUES (?, ?, ?, ?)"
        await self._run(lambda conn: conn.execute(sql, (kind, key, json.dumps(data), expires)))

    async def get_record(self, kind: str, key: str, now: float) -> dict[str, Any] | None:
        def read(conn: sqlite3.Connection) -> Any:
            conn.execute("DELETE FROM auth_records WHERE expires < ?", (now,))
            return conn.execute(
                "SELECT data FROM auth_records WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()

        row = await self._run(read)
        data: dict[str, Any] | None = json.loads(row[0]) if row else None
        return data

    async def delete_record(self, kind: str, key: str) -> None:
        sql = "DELETE FROM auth_records WHERE kind = ? AND key = ?"
        await self._run(lambda conn: conn.execute(sql, (kind, key)))
