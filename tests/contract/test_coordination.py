"""Coordination between processes sharing one database: the lease, counters, saved state.

Two engine instances over one database stand for two server processes (SQLite: two
connections to one file; MongoDB: two engines on one database of the stand-in).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from fhir_server.storage.base import Storage
from fhir_server.storage.mongodb import MongoStorage
from fhir_server.storage.sqlite import SQLiteStorage


async def second(storage: Storage) -> Storage:
    """Another engine over the same database as `storage` (another server process)."""
    if isinstance(storage, SQLiteStorage):
        other: Storage = SQLiteStorage(storage.path)
    elif isinstance(storage, MongoStorage):
        other = MongoStorage(cast(Any, storage)._db)
    else:
        pytest.skip(f"no second instance for {type(storage).__name__}")
    await other.open()
    return other


async def test_a_lease_has_one_holder_until_it_expires(storage: Storage) -> None:
    other = await second(storage)
    try:
        assert await storage.acquire_lease("leader", "a", 0.3)
        assert not await other.acquire_lease("leader", "b", 0.3)
        assert await storage.acquire_lease("leader", "a", 0.3)  # renewed by its holder
        await asyncio.sleep(0.4)
        assert await other.acquire_lease("leader", "b", 5)  # expired: taken over
        assert not await storage.acquire_lease("leader", "a", 5)
    finally:
        await other.close()


async def test_a_released_lease_is_free_at_once(storage: Storage) -> None:
    assert await storage.acquire_lease("leader", "a", 60)
    await storage.release_lease("leader", "b")  # not b's: nothing happens
    assert not await storage.acquire_lease("leader", "b", 60)
    await storage.release_lease("leader", "a")
    assert await storage.acquire_lease("leader", "b", 60)


async def test_leases_are_independent_by_name(storage: Storage) -> None:
    assert await storage.acquire_lease("leader", "a", 60)
    assert await storage.acquire_lease("job:reindex", "b", 60)


async def test_racing_acquirers_get_one_lease(storage: Storage) -> None:
    won = await asyncio.gather(*(storage.acquire_lease("leader", f"p{i}", 60) for i in range(8)))
    assert sum(won) == 1


async def test_a_bumped_generation_is_seen_by_another_instance(storage: Storage) -> None:
    other = await second(storage)
    try:
        assert await other.generation("watch") == 0
        await storage.bump_generation("watch")
        await storage.bump_generation("watch")
        assert await other.generation("watch") == 2
        assert await other.generation("keys") == 0
    finally:
        await other.close()


async def test_saved_state_round_trips_and_is_removed(storage: Storage) -> None:
    other = await second(storage)
    try:
        assert await storage.load_state("job:reindex") is None
        await storage.save_state("job:reindex", b'{"done": []}')
        await storage.save_state("job:reindex", b'{"done": ["Patient"]}')
        assert await other.load_state("job:reindex") == b'{"done": ["Patient"]}'
        await other.save_state("job:reindex", None)
        assert await storage.load_state("job:reindex") is None
    finally:
        await other.close()
