"""The durable inbox: store before ACK, duplicates, unfinished work, dead letters, outbound."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.hl7v2.inbox import Inbox, InboxFile, inbox_path

RAW = b"MSH|^~\\&|LAB|NORTH|FHIR|HUB|20240102||ADT^A01|M1|P|2.5.1\rPID|1||1\r"


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[InboxFile]:
    store = InboxFile(tmp_path / "fhir.db.hl7inbox.db")
    yield store
    store.close()


def test_path_defaults_beside_the_database() -> None:
    assert inbox_path("sqlite", "/d/fhir.db", None) == Path("/d/fhir.db.hl7inbox.db")
    assert inbox_path("mongodb", "mongodb://x", "/q/in.db") == Path("/q/in.db")
    with pytest.raises(ValueError):
        inbox_path("mongodb", "mongodb://x", None)


def test_file_is_wal_with_full_sync(inbox: InboxFile) -> None:
    assert inbox.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert inbox.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_duplicate_is_the_same_row_and_a_changed_payload_is_not(inbox: InboxFile) -> None:
    first, new = inbox.receive("LAB|NORTH", "M1", "ADT^A01", RAW)
    assert new and first.state == "received" and first.raw == RAW
    again, new = inbox.receive("LAB|NORTH", "M1", "ADT^A01", RAW)
    assert not new and again.id == first.id
    other, new = inbox.receive("LAB|NORTH", "M1", "ADT^A01", RAW + b"PV1|1\r")
    assert new and other.id != first.id
    _elsewhere, new = inbox.receive("LAB|SOUTH", "M1", "ADT^A01", RAW)
    assert new


def test_stored_message_survives_reopening_until_finished(tmp_path: Path) -> None:
    path = tmp_path / "in.db"
    store = InboxFile(path)
    stored, _ = store.receive("LAB|NORTH", "M1", "ADT^A01", RAW)
    store.close()
    store = InboxFile(path)
    assert [m.id for m in store.unfinished()] == [stored.id]
    store.finish(stored.id, "done", "MSH|...ACK")
    assert store.unfinished() == []
    again, new = store.receive("LAB|NORTH", "M1", "ADT^A01", RAW)
    assert not new and again.ack == "MSH|...ACK" and again.state == "done"
    store.close()


def test_attempts_count_and_dead_letters_replay(inbox: InboxFile) -> None:
    stored, _ = inbox.receive("LAB|NORTH", "M2", "ORU^R01", RAW)
    assert inbox.attempted(stored.id, "boom") == 1
    assert inbox.attempted(stored.id, "boom") == 2
    inbox.finish(stored.id, "rejected", "ack-ar", "unsupported")
    assert inbox.dead_letters() == []  # AR: the sender fixes it, no dead letter
    inbox.finish(stored.id, "dead", "ack-ae", "no Patient")
    [letter] = inbox.dead_letters()
    assert (letter.direction, letter.message_id, letter.reason) == ("in", stored.id, "no Patient")
    assert inbox.dead_letter(letter.id) == letter
    inbox.requeue(letter)
    assert [m.id for m in inbox.unfinished()] == [stored.id]
    inbox.replayed(letter.id, "ok")
    assert inbox.dead_letters() == []
    assert len(inbox.dead_letters(include_replayed=True)) == 1


def test_finish_is_atomic_with_its_dead_letter(inbox: InboxFile) -> None:
    stored, _ = inbox.receive("LAB|NORTH", "M3", "ADT^A01", RAW)
    inbox.db.execute("DROP TABLE dead_letters")
    with pytest.raises(sqlite3.OperationalError):
        inbox.finish(stored.id, "dead", "ack", "why")
    assert inbox.message(stored.id).state == "received"


def test_outbound_queue_retry_and_dead_letter(inbox: InboxFile) -> None:
    first = inbox.enqueue("lab", "Patient/1", "ADT^A08", "MSH|1")
    second = inbox.enqueue("lab", "Patient/1", "ADT^A08", "MSH|2")
    inbox.enqueue("other", "Patient/2", "ADT^A08", "MSH|3")
    assert [m.id for m in inbox.pending("lab")] == [first, second]
    inbox.retry_later(first, 1, 123.0, "refused")
    message = inbox.outgoing(first)
    assert (message.attempts, message.next_at, message.error) == (1, 123.0, "refused")
    inbox.sent(second, "ack")
    inbox.undeliverable(first, "gave up")
    assert inbox.pending("lab") == []
    [letter] = inbox.dead_letters()
    assert letter.direction == "out"
    inbox.requeue(letter)
    assert inbox.outgoing(first).state == "pending" and inbox.outgoing(first).attempts == 0


def test_async_inbox_runs_calls_on_its_thread(tmp_path: Path) -> None:
    async def scenario() -> None:
        inbox = await Inbox(tmp_path / "a.db").open()
        try:
            stored, new = await inbox.call(inbox.file.receive, "A|B", "1", "ADT^A01", RAW)
            assert new
            assert [m.id for m in await inbox.call(inbox.file.unfinished)] == [stored.id]
        finally:
            await inbox.close()
        with pytest.raises(RuntimeError):
            _ = inbox.file

    asyncio.run(scenario())


def test_concurrent_calls_share_a_commit_and_a_failure_undoes_only_itself(tmp_path: Path) -> None:
    async def scenario() -> None:
        inbox = await Inbox(tmp_path / "group.db").open()
        try:
            receives = [
                inbox.call(inbox.file.receive, "LAB|N", f"G{i}", "ADT^A01", RAW + str(i).encode())
                for i in range(50)
            ]
            failing = inbox.call(inbox.file.finish, "not an id", "done", object())
            results = await asyncio.gather(*receives, failing, return_exceptions=True)
            assert all(new for _, new in results[:50])  # type: ignore[misc]
            assert isinstance(results[50], Exception)
        finally:
            await inbox.close()

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / "group.db") as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 50
