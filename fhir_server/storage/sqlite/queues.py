"""Outbox queues on one file: entries written inside resource transactions.

`enqueue` runs in the caller's write transaction (the engine's single writer, and
BEGIN IMMEDIATE against other processes), so a queue's sequence numbers follow commit
order and an entry commits or rolls back with the resources written beside it. The
tables (`queue_heads`, `queue_entries`) are in `schema` (version 5).
"""

from __future__ import annotations

import sqlite3

from fhir_server.storage.sqlite.sql import fetch_all, fetch_one


def enqueue(conn: sqlite3.Connection, queue: str, payload: bytes) -> int:
    """Append `payload` to `queue`; its sequence number (1, 2, ... per queue)."""
    row = fetch_one(
        conn,
        "INSERT INTO queue_heads (queue, last) VALUES (?, 1) "
        "ON CONFLICT (queue) DO UPDATE SET last = last + 1 RETURNING last",
        (queue,),
    )
    seq = int(row[0])
    conn.execute(
        "INSERT INTO queue_entries (queue, seq, payload) VALUES (?, ?, ?)", (queue, seq, payload)
    )
    return seq


def heads(conn: sqlite3.Connection, prefix: str) -> dict[str, int]:
    rows = fetch_all(
        conn,
        "SELECT queue, last FROM queue_heads WHERE queue >= ? AND queue < ?",
        (prefix, prefix + "\U0010ffff"),
    )
    return {str(q): int(last) for q, last in rows}


def entries(
    conn: sqlite3.Connection, queue: str, after: int, until: int | None, limit: int
) -> list[tuple[int, bytes]]:
    rows = fetch_all(
        conn,
        "SELECT seq, payload FROM queue_entries WHERE queue = ? AND seq > ? AND seq <= ? "
        "ORDER BY seq LIMIT ?",
        (queue, after, until if until is not None else 2**62, limit),
    )
    return [(int(seq), bytes(payload)) for seq, payload in rows]


def trim(conn: sqlite3.Connection, queue: str, upto: int) -> None:
    conn.execute("DELETE FROM queue_entries WHERE queue = ? AND seq <= ?", (queue, upto))


def drop(conn: sqlite3.Connection, queue: str) -> None:
    conn.execute("DELETE FROM queue_entries WHERE queue = ?", (queue,))
    conn.execute("DELETE FROM queue_heads WHERE queue = ?", (queue,))
