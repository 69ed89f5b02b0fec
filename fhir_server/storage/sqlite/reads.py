"""Reading stored resources: current versions, past versions and history pages."""

from __future__ import annotations

import sqlite3
from typing import Any

from fhir_server.storage.base import HistoryQuery, Page, StoredResource
from fhir_server.storage.sqlite.sql import Fragment, and_, fetch_all, fetch_one

RECORD = "type, id, version, last_updated, deleted, data, method"
R_RECORD = "r.type, r.id, r.version, r.last_updated, r.deleted, r.data, r.method"


def record(row: tuple[Any, ...]) -> StoredResource:
    type_, id_, version, last_updated, deleted, data, method = row
    return StoredResource(type_, id_, version, last_updated, bool(deleted), data, method)


def read(conn: sqlite3.Connection, type: str, id: str) -> StoredResource | None:
    row = fetch_one(conn, f"SELECT {RECORD} FROM resources WHERE type = ? AND id = ?", (type, id))
    return record(row) if row else None


def vread(conn: sqlite3.Connection, type: str, id: str, version: int) -> StoredResource | None:
    row = fetch_one(
        conn,
        "SELECT r.type, r.id, v.version, v.last_updated, v.deleted, v.data, v.method "
        "FROM resources r JOIN versions v ON v.rid = r.rid AND v.version = ? "
        "WHERE r.type = ? AND r.id = ?",
        (version, type, id),
    )
    return record(row) if row else None


def all_types(conn: sqlite3.Connection) -> list[str]:
    """The resource types present, by a skip-scan of the (type, ...) index: one seek each."""
    return [
        row[0]
        for row in fetch_all(
            conn,
            """
        WITH RECURSIVE t(type) AS (
            SELECT min(type) FROM resources
            UNION ALL
            SELECT (SELECT min(type) FROM resources WHERE type > t.type) FROM t
            WHERE t.type IS NOT NULL)
        SELECT type FROM t WHERE type IS NOT NULL""",
        )
    ]


def _history_where(conn: sqlite3.Connection, q: HistoryQuery) -> Fragment | None:
    """WHERE over `versions v` for the query, or None when the instance does not exist."""
    parts: list[Fragment] = []
    if q.type is not None and q.id is not None:
        row = fetch_one(conn, "SELECT rid FROM resources WHERE type = ? AND id = ?", (q.type, q.id))
        if row is None:
            return None
        parts.append(("v.rid = ?", [row[0]]))
    elif q.type is not None:
        parts.append(("v.type = ?", [q.type]))
    if q.since is not None:
        parts.append(("v.last_updated >= ?", [q.since]))
    if q.at is not None:
        parts.append(
            (
                "v.last_updated <= ? AND v.version = (SELECT max(w.version) FROM versions w "
                "WHERE w.rid = v.rid AND w.last_updated <= ?)",
                [q.at, q.at],
            )
        )
    return and_(*parts) if parts else ("1", [])


def history(conn: sqlite3.Connection, q: HistoryQuery) -> Page:
    found = _history_where(conn, q)
    if found is None:
        return Page([], 0)
    where, params = found
    sql = (
        "SELECT r.type, r.id, v.version, v.last_updated, v.deleted, v.data, v.method "
        f"FROM versions v JOIN resources r ON r.rid = v.rid WHERE {where} "
        "ORDER BY v.last_updated DESC, v.version DESC, v.vid DESC LIMIT ? OFFSET ?"
    )
    resources = [record(row) for row in fetch_all(conn, sql, [*params, q.count, q.offset])]
    total = fetch_one(conn, f"SELECT count(*) FROM versions v WHERE {where}", params)[0]
    return Page(resources, total)
