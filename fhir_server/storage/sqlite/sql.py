"""SQL building blocks shared by the engine's modules: fragments and fetching rows.

However many parts a search has, what these build stays within SQLite's compile-time
limits: a compound SELECT holds at most 500 terms and an expression tree is at most 1,000
deep, so long UNIONs, ANDs and ORs are nested in groups of `GROUP` (a tree of depth
log(n) instead of a chain of n).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

Fragment = tuple[str, list[Any]]  # SQL text and its parameters, in order
GROUP = 64  # parts joined flat; more are nested in groups of this many


def marks(n: int) -> str:
    return ", ".join("?" * n)


def fetch_all(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """All rows; fetching them all resets the statement, so no read snapshot stays open."""
    return conn.execute(sql, params).fetchall()


def fetch_one(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    rows = fetch_all(conn, sql, params)
    return rows[0] if rows else None


def _joined(parts: Sequence[Fragment], separator: str) -> Fragment:
    return (separator.join(s for s, _ in parts), [p for _, ps in parts for p in ps])


def _grouped(parts: list[Fragment], separator: str, wrap: str) -> list[Fragment]:
    """`parts` nested in groups of GROUP until at most GROUP are left; `wrap` encloses one
    group's joined SQL."""
    while len(parts) > GROUP:
        groups = [_joined(parts[i : i + GROUP], separator) for i in range(0, len(parts), GROUP)]
        parts = [(wrap.format(sql), params) for sql, params in groups]
    return parts


def and_(*parts: Fragment) -> Fragment:
    present = _grouped([p for p in parts if p[0]], " AND ", "({})")
    return _joined(present, " AND ")


def or_(parts: list[Fragment]) -> Fragment:
    if not parts:
        return ("0", [])  # an empty OR matches nothing
    grouped = _grouped([(f"({s})", ps) for s, ps in parts], " OR ", "({})")
    sql, params = _joined(grouped, " OR ")
    return (f"({sql})", params)


def union_all(selects: list[Fragment]) -> Fragment:
    """The rows of every SELECT (of one column each) as one compound SELECT."""
    return _joined(_grouped(selects, " UNION ALL ", "SELECT * FROM ({})"), " UNION ALL ")
