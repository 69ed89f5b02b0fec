"""The durable inbox: every HL7 v2 message is stored here before it is acknowledged.

One SQLite file (WAL, `synchronous=FULL`: a commit has reached the disk when it returns;
only a commit that records outcomes alone skips the flush, see `Inbox._durability`) next to
the database, or where `FHIR_HL7_INBOX` says. It holds:

- `messages`: each inbound message as received, keyed by sender + MSH-10 + payload hash
  (a resend of the same message is a duplicate and gets the stored ACK), with its state:
  `received` (stored, not yet processed: drained on start), `done` (AA), `rejected` (AR:
  the sender must fix it) or `dead` (AE, or internal errors that did not go away);
- `outbound`: messages queued for a destination, sent in order per patient;
- `dead_letters`: what an operator lists, inspects and replays (`fhir-server hl7 ...`).

`InboxFile` is the synchronous store (the CLI uses it as it is); `Inbox` runs the same
calls on one worker thread so the event loop never waits for a disk flush.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    control_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    message_type TEXT NOT NULL,
    raw BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    ack TEXT,
    error TEXT,
    received TEXT NOT NULL,
    updated TEXT NOT NULL,
    UNIQUE (sender, control_id, hash)
);
CREATE INDEX IF NOT EXISTS messages_state ON messages (state) WHERE state = 'received';
CREATE TABLE IF NOT EXISTS outbound (
    id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    patient_key TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    ack TEXT,
    error TEXT,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbound_pending ON outbound (destination, id)
    WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    direction TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created TEXT NOT NULL,
    replayed TEXT,
    replay_result TEXT
);
"""


def inbox_path(storage: str, database: str, configured: str | None) -> Path:
    """`FHIR_HL7_INBOX` if set, else `<database>.hl7inbox.db` (SQLite storage only)."""
    if configured:
        return Path(configured)
    if storage != "sqlite":
        raise ValueError("set FHIR_HL7_INBOX (a file path) for the HL7 v2 inbox with MongoDB")
    return Path(f"{database}.hl7inbox.db")


def payload_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class Stored:
    """One inbound message row."""

    id: int
    sender: str
    control_id: str
    message_type: str
    raw: bytes
    state: str
    attempts: int
    ack: str | None
    error: str | None
    received: str


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One outbound message row."""

    id: int
    destination: str
    patient_key: str
    event: str
    payload: str
    state: str
    attempts: int
    next_at: float
    ack: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    direction: str  # "in" or "out"
    message_id: int
    reason: str
    created: str
    replayed: str | None
    replay_result: str | None


_MESSAGE = "id, sender, control_id, message_type, raw, state, attempts, ack, error, received"
_OUTGOING = "id, destination, patient_key, event, payload, state, attempts, next_at, ack, error"


class InboxFile:
    """The inbox tables over one SQLite connection; each call is one committed change."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- inbound -------------------------------------------------------------------------

    def receive(
        self, sender: str, control_id: str, message_type: str, raw: bytes
    ) -> tuple[Stored, bool]:
        """Store a message; (its row, True) when it is new, (the earlier row, False) if not."""
        digest, now = payload_hash(raw), now_text()
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO messages (sender, control_id, hash, message_type, raw, "
            "state, received, updated) VALUES (?, ?, ?, ?, ?, 'received', ?, ?)",
            (sender, control_id, digest, message_type, raw, now, now),
        )
        new = cursor.rowcount == 1
        row = self.db.execute(
            f"SELECT {_MESSAGE} FROM messages WHERE sender = ? AND control_id = ? AND hash = ?",
            (sender, control_id, digest),
        ).fetchone()
        return Stored(*row), new

    def message(self, id: int) -> Stored | None:
        row = self.db.execute(f"SELECT {_MESSAGE} FROM messages WHERE id = ?", (id,)).fetchone()
        return Stored(*row) if row else None

    def unfinished(self, older_than: float = 0.0) -> list[Stored]:
        """Messages stored but not processed (a crash or stop came in between), oldest first;
        only those last changed more than `older_than` seconds ago (younger ones may be
        under way in another server process)."""
        before = datetime.fromtimestamp(time.time() - older_than, UTC).isoformat(
            timespec="milliseconds"
        )
        rows = self.db.execute(
            f"SELECT {_MESSAGE} FROM messages WHERE state = 'received' AND updated <= ? "
            "ORDER BY id",
            (before,),
        ).fetchall()
        return [Stored(*row) for row in rows]

    def attempted(self, id: int, error: str) -> int:
        """Count a failed processing attempt; the number of attempts so far."""
        self.db.execute(
            "UPDATE messages SET attempts = attempts + 1, error = ?, updated = ? WHERE id = ?",
            (error, now_text(), id),
        )
        return int(
            self.db.execute("SELECT attempts FROM messages WHERE id = ?", (id,)).fetchone()[0]
        )

    def finish(self, id: int, state: str, ack: str, error: str | None = None) -> None:
        """Record the outcome and the ACK; `dead` also files a dead letter."""
        with self._transaction():
            self.db.execute(
                "UPDATE messages SET state = ?, ack = ?, error = ?, updated = ? WHERE id = ?",
                (state, ack, error, now_text(), id),
            )
            if state == "dead":
                self._dead("in", id, error or "failed")

    # -- outbound ------------------------------------------------------------------------

    def enqueue(self, destination: str, patient_key: str, event: str, payload: str) -> int:
        cursor = self.db.execute(
            "INSERT INTO outbound (destination, patient_key, event, payload, state, created) "
            "VALUES (?, ?, ?, ?, 'pending', ?)",
            (destination, patient_key, event, payload, now_text()),
        )
        return int(cursor.lastrowid or 0)

    def pending(self, destination: str, limit: int = 500) -> list[Outgoing]:
        rows = self.db.execute(
            f"SELECT {_OUTGOING} FROM outbound WHERE destination = ? AND state = 'pending' "
            "ORDER BY id LIMIT ?",
            (destination, limit),
        ).fetchall()
        return [Outgoing(*row) for row in rows]

    def outgoing(self, id: int) -> Outgoing | None:
        row = self.db.execute(f"SELECT {_OUTGOING} FROM outbound WHERE id = ?", (id,)).fetchone()
        return Outgoing(*row) if row else None

    def sent(self, id: int, ack: str) -> None:
        self.db.execute(
            "UPDATE outbound SET state = 'sent', ack = ?, error = NULL WHERE id = ?", (ack, id)
        )

    def retry_later(self, id: int, attempts: int, next_at: float, error: str) -> None:
        self.db.execute(
            "UPDATE outbound SET attempts = ?, next_at = ?, error = ? WHERE id = ?",
            (attempts, next_at, error, id),
        )

    def undeliverable(self, id: int, error: str, ack: str | None = None) -> None:
        with self._transaction():
            self.db.execute(
                "UPDATE outbound SET state = 'dead', error = ?, ack = ? WHERE id = ?",
                (error, ack, id),
            )
            self._dead("out", id, error)

    # -- dead letters --------------------------------------------------------------------

    def depth(self) -> tuple[int, int]:
        """Messages received and not processed yet, and outstanding dead letters."""
        waiting = self.db.execute("SELECT count(*) FROM messages WHERE state = 'received'")
        dead = self.db.execute("SELECT count(*) FROM dead_letters WHERE replayed IS NULL")
        return int(waiting.fetchone()[0]), int(dead.fetchone()[0])

    def dead_letters(self, include_replayed: bool = False) -> list[DeadLetter]:
        """Outstanding letters: not replayed yet (a replay that fails files a new letter)."""
        where = "" if include_replayed else "WHERE replayed IS NULL"
        rows = self.db.execute(f"SELECT * FROM dead_letters {where} ORDER BY id").fetchall()
        return [DeadLetter(*row) for row in rows]

    def dead_letter(self, id: int) -> DeadLetter | None:
        row = self.db.execute("SELECT * FROM dead_letters WHERE id = ?", (id,)).fetchone()
        return DeadLetter(*row) if row else None

    def replayed(self, id: int, result: str) -> None:
        """Note a replay's outcome: `ok`, `requeued` (outbound) or why it failed again."""
        self.db.execute(
            "UPDATE dead_letters SET replayed = ?, replay_result = ? WHERE id = ?",
            (now_text(), result, id),
        )

    def requeue(self, letter: DeadLetter) -> None:
        """Back to the queue it came from: unprocessed (inbound) or pending (outbound)."""
        if letter.direction == "in":
            self.db.execute(
                "UPDATE messages SET state = 'received', attempts = 0 WHERE id = ?",
                (letter.message_id,),
            )
        else:
            self.db.execute(
                "UPDATE outbound SET state = 'pending', attempts = 0, next_at = 0 WHERE id = ?",
                (letter.message_id,),
            )

    def _dead(self, direction: str, message_id: int, reason: str) -> None:
        self.db.execute(
            "INSERT INTO dead_letters (direction, message_id, reason, created) VALUES (?, ?, ?, ?)",
            (direction, message_id, reason, now_text()),
        )

    def _transaction(self) -> _Tx:
        return _Tx(self.db)


class _Tx:
    """One atomic change: a savepoint, so it also nests inside the inbox's group commit."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("SAVEPOINT change")

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind:
            self.db.execute("ROLLBACK TO change")
        self.db.execute("RELEASE change")


class Inbox:
    """`InboxFile` for the event loop: every call runs on the inbox's own thread.

    Group commit: the calls waiting when the thread gets to them run in one SQLite
    transaction (each in its own savepoint, so a failing call undoes only itself) and one
    disk flush; none of them returns before that commit is durable.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._file: InboxFile | None = None
        self._lazy = False  # the connection is at synchronous=NORMAL (else FULL)

    async def open(self) -> Inbox:
        self._thread = threading.Thread(target=self._work, name="hl7-inbox", daemon=True)
        self._thread.start()
        self._file = await self._run(InboxFile, self.path)
        return self

    async def close(self) -> None:
        if self._file is not None:
            await self._run(self._file.close)
            self._file = None
        if self._thread is not None:
            self._calls.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    @property
    def file(self) -> InboxFile:
        if self._file is None:
            raise RuntimeError("the HL7 inbox is not open")
        return self._file

    async def call(self, method: Callable[..., T], *args: object) -> T:
        """Run `method` (an `InboxFile` method of `self.file`) on the inbox thread."""
        return await self._run(method, *args)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put(_Call(fn, args, loop, future))
        return await future

    def _work(self) -> None:
        while True:
            first = self._calls.get()
            if first is None:
                return
            batch = [first]
            while not self._calls.empty() and len(batch) < 256:
                item = self._calls.get()
                if item is None:
                    self._calls.put(None)
                    break
                batch.append(item)
            self._group(batch)

    def _group(self, batch: list[_Call]) -> None:
        db = self._file.db if self._file is not None and len(batch) > 1 else None
        outcomes: list[tuple[bool, object]] = []
        self._durability(batch)
        try:
            if db is not None:
                db.execute("BEGIN IMMEDIATE")
            for call in batch:
                try:
                    if db is not None:
                        with _Tx(db):
                            outcomes.append((True, call.fn(*call.args)))
                    else:
                        outcomes.append((True, call.fn(*call.args)))
                except Exception as error:
                    outcomes.append((False, error))
            if db is not None:
                db.execute("COMMIT")
        except Exception as error:  # the commit failed: nothing in the batch is durable
            if db is not None and db.in_transaction:
                db.execute("ROLLBACK")
            outcomes = [(False, error)] * len(batch)
        for call, (ok, value) in zip(batch, outcomes, strict=True):
            call.loop.call_soon_threadsafe(_settle, call.future, ok, value)

    def _durability(self, batch: list[_Call]) -> None:
        """`synchronous=FULL` (a disk flush per commit) unless every call may do without.

        Recording an outcome (`finish`) need not reach the disk before the ACK goes: the
        message itself is durable since `receive`, and if the outcome is lost (a power cut:
        a crash of the process loses nothing) the message is `received` again at the next
        start and processed again, which changes nothing (every entry is an idempotent
        update) and gives the same answer. The next FULL commit flushes it with its own.
        """
        file = self._file
        if file is None:
            return
        lazy = all(getattr(call.fn, "__func__", None) in _LAZY for call in batch)
        if lazy != self._lazy:
            file.db.execute(f"PRAGMA synchronous={'NORMAL' if lazy else 'FULL'}")
            self._lazy = lazy


_LAZY = frozenset({InboxFile.finish})
"""InboxFile calls whose commit needs no disk flush of its own (see `Inbox._durability`)."""


@dataclass(frozen=True, slots=True)
class _Call:
    fn: Callable[..., object]
    args: tuple[object, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]  # of the call's result type


def _settle(future: asyncio.Future[Any], ok: bool, value: object) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)  # type: ignore[arg-type]


def after(delay: float) -> float:
    """A wall-clock time `delay` seconds from now (stored, so it must survive a restart)."""
    return time.time() + delay
