"""SQL building blocks shared by the engine's modules: fragments and fetching rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

Fragment = tuple[str, list[Any]]  # SQL text and its parameters, in order


def marks(n: int) -> str:
    return ", ".join("?" * n)


def fetch_all(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """All rows; fetching them all resets the statement, so no read snapshot stays open."""
    return conn.execute(sql, params).fetchall()


def fetch_one(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    rows = fetch_all(conn, sql, params)
    return rows[0] if rows else None


def and_(*parts: Fragment) -> Fragment:
    present = [p for p in parts if p[0]]
    return (" AND ".join(p[0] for p in present), [x for p in present for x in p[1]])


def or_(parts: list[Fragment]) -> Fragment:
    if not parts:
        return ("0", [])  # an empty OR matches nothing
    return ("(" + " OR ".join(f"({s})" for s, _ in parts) + ")", [p for _, ps in parts for p in ps])
