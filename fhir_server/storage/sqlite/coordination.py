"""Coordination between processes on one file: leases, generation counters, saved state.

Each call is one short statement; the writes run inside the engine's write transactions
(so they serialize with every other writer, in this process and in others). The tables
(`leases`, `generations`, `saved_state`) are in `schema` (version 4).
"""

from __future__ import annotations

import sqlite3

from fhir_server.storage.sqlite.sql import fetch_one


def acquire(conn: sqlite3.Connection, name: str, holder: str, now: float, until: float) -> bool:
    """Take lease `name` if free, expired or `holder`'s; True when `holder` holds it."""
    row = fetch_one(
        conn,
        "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
        "WHERE leases.holder = excluded.holder OR leases.expires < ? RETURNING holder",
        (name, holder, until, now),
    )
    return row is not None


def release(conn: sqlite3.Connection, name: str, holder: str) -> None:
    conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))


def generation(conn: sqlite3.Connection, name: str) -> int:
    row = fetch_one(conn, "SELECT value FROM generations WHERE name = ?", (name,))
    return int(row[0]) if row else 0


def bump(conn: sqlite3.Connection, name: str) -> None:
    conn.execute(
        "INSERT INTO generations (name, value) VALUES (?, 1) "
        "ON CONFLICT (name) DO UPDATE SET value = value + 1",
        (name,),
    )


def load(conn: sqlite3.Connection, key: str) -> bytes | None:
    row = fetch_one(conn, "SELECT value FROM saved_state WHERE key = ?", (key,))
    return bytes(row[0]) if row else None


def save(conn: sqlite3.Connection, key: str, value: bytes | None) -> None:
    if value is None:
        conn.execute("DELETE FROM saved_state WHERE key = ?", (key,))
    else:
        conn.execute(
            "INSERT INTO saved_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def keys(conn: sqlite3.Connection, prefix: str) -> list[str]:
    """Saved-state keys starting with `prefix` (a range on the primary key, no LIKE)."""
    rows = conn.execute(
        "SELECT key FROM saved_state WHERE key >= ? AND key < ? ORDER BY key",
        (prefix, prefix + "\U0010ffff"),
    ).fetchall()
    return [str(row[0]) for row in rows]
