"""Outbox queues: entries written in a resource transaction commit or roll back with it,
numbered per queue in commit order without gaps, on every engine."""

from __future__ import annotations

import asyncio

import pytest

from fhir_server.errors import TransientStorageError, VersionConflict
from fhir_server.storage.base import Storage, StoredResource
from tests.contract.test_coordination import second


def patient(id: str, version: int = 1) -> StoredResource:
    data = b'{"resourceType":"Patient","id":"%s"}' % id.encode()
    return StoredResource("Patient", id, version, "2026-12-02T10:00:00.000000Z", False, data)


async def test_entries_are_numbered_per_queue_and_read_in_order(storage: Storage) -> None:
    async with storage.transaction() as tx:
        assert await tx.enqueue("sub/a", b"a1") == 1
        assert await tx.enqueue("sub/b", b"b1") == 1
        assert await tx.enqueue("sub/a", b"a2") == 2
    async with storage.transaction() as tx:
        assert await tx.enqueue("sub/a", b"a3") == 3
        assert await tx.enqueue("other", b"x") == 1
    assert await storage.queue_heads("sub/") == {"sub/a": 3, "sub/b": 1}
    assert await storage.queue_entries("sub/a", 0) == [(1, b"a1"), (2, b"a2"), (3, b"a3")]
    assert await storage.queue_entries("sub/a", 1, limit=1) == [(2, b"a2")]
    assert await storage.queue_entries("sub/a", 0, until=2) == [(1, b"a1"), (2, b"a2")]
    await storage.queue_trim("sub/a", 2)
    assert await storage.queue_entries("sub/a", 0) == [(3, b"a3")]
    async with storage.transaction() as tx:  # trimming does not restart the numbering
        assert await tx.enqueue("sub/a", b"a4") == 4
    await storage.queue_drop("sub/a")
    assert await storage.queue_heads("sub/") == {"sub/b": 1}
    assert await storage.queue_entries("sub/a", 0) == []


async def test_a_rolled_back_write_leaves_no_entry_and_no_number(storage: Storage) -> None:
    with pytest.raises(RuntimeError):
        async with storage.transaction() as tx:
            await tx.write(patient("p1"), (), expected_version=0)
            await tx.enqueue("sub/a", b"lost")
            raise RuntimeError("the write fails after its outbox entry")
    assert await storage.read("Patient", "p1") is None
    assert await storage.queue_entries("sub/a", 0) == []
    assert await storage.queue_heads("sub/") == {}
    async with storage.transaction() as tx:
        await tx.write(patient("p1"), (), expected_version=0)
        assert await tx.enqueue("sub/a", b"kept") == 1
    assert await storage.queue_entries("sub/a", 0) == [(1, b"kept")]


async def test_a_version_conflict_takes_its_entry_back(storage: Storage) -> None:
    async with storage.transaction() as tx:
        await tx.write(patient("p1"), (), expected_version=0)
    with pytest.raises(VersionConflict):
        async with storage.transaction() as tx:
            await tx.enqueue("sub/a", b"lost")
            await tx.write(patient("p1"), (), expected_version=0)  # it exists: conflict
    assert await storage.queue_entries("sub/a", 0) == []


async def test_concurrent_writers_of_two_processes_get_gapless_commit_ordered_numbers(
    storage: Storage,
) -> None:
    other = await second(storage)
    committed: list[bytes] = []

    async def writer(engine: Storage, name: str) -> None:
        while True:  # the service retries a lost race the same way
            try:
                async with engine.transaction() as tx:
                    await tx.enqueue("sub/a", name.encode())
                    await asyncio.sleep(0.001)  # another writer runs meanwhile
                committed.append(name.encode())
                return
            except (VersionConflict, TransientStorageError):
                await asyncio.sleep(0.002)

    try:
        await asyncio.gather(*(writer(storage if i % 2 else other, f"w{i}") for i in range(12)))
    finally:
        await other.close()
    entries = await storage.queue_entries("sub/a", 0)
    assert [seq for seq, _ in entries] == list(range(1, 13))
    assert sorted(payload for _, payload in entries) == sorted(committed)
    if not _groups_commits(storage):
        assert [payload for _, payload in entries] == committed  # numbers follow commits


def _groups_commits(storage: Storage) -> bool:
    """SQLite acknowledges a group of transactions at one COMMIT, so the order in which
    their callers resume is not the order of their numbers within the group."""
    return type(storage).__name__ == "SQLiteStorage"
