"""Factories for the MongoDB engine under test: on the mongomock adapter, and on a real server.

`MONGO_FACTORIES[name](tmp_path)` returns an opened `MongoStorage` on fresh, empty data;
the caller closes it. "mongomock" always runs (see `mongomock_async` for what it
emulates and what it cannot show). "mongodb" runs on the replica set or sharded cluster
at `FHIR_TEST_MONGODB_URL` (e.g. mongodb://localhost:27017/?replicaSet=rs0) in a fresh
database per test that `close()` drops; without the variable it skips the test.
"mongodb-sharded" runs on the mongos at `FHIR_TEST_MONGODB_SHARDED_URL` with the collections
sharded on the documented shard keys (`SHARD_KEYS`), the same way.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from fhir_server.storage.base import Storage
from fhir_server.storage.mongodb import MongoStorage
from tests.support.mongomock_async import mock_database

MONGODB_URL_ENV = "FHIR_TEST_MONGODB_URL"
SHARDED_URL_ENV = "FHIR_TEST_MONGODB_SHARDED_URL"
SHARD_KEYS: dict[str, dict[str, Any]] = {
    # One resource's current version, its history and its chunks hash to the same value
    # of the same key, but the collections are placed independently (see the README).
    "resources": {"type": 1, "id": "hashed"},
    "history": {"type": 1, "id": "hashed"},
    "chunks": {"type": 1, "id": "hashed"},
    "locks": {"_id": "hashed"},
}


class _ThrowawayMongoStorage(MongoStorage):
    """A `MongoStorage` on its own database, dropped when the storage is closed."""

    async def close(self) -> None:
        try:
            await self._client.drop_database(self._db.name)
        finally:
            await super().close()


async def mongomock_storage(tmp_path: Path) -> Storage:
    storage = MongoStorage(cast(Any, mock_database()))
    await storage.open()
    return storage


async def mongodb_storage(tmp_path: Path) -> Storage:
    return await real_storage(MONGODB_URL_ENV)


async def mongodb_sharded_storage(tmp_path: Path) -> Storage:
    return await real_storage(SHARDED_URL_ENV, sharded=True)


async def shard(client: Any, database: str) -> None:
    """Shard `database`'s collections on `SHARD_KEYS` (through a mongos)."""
    admin = client.admin
    await admin.command("enableSharding", database)
    for name, key in SHARD_KEYS.items():
        await admin.command("shardCollection", f"{database}.{name}", key=key)


async def real_storage(env: str, *, sharded: bool = False) -> MongoStorage:
    """An opened engine on a fresh database of the server at `$env`, or a skip."""
    url = os.environ.get(env)
    if not url:
        pytest.skip(f"{env} not set: real-MongoDB run not executed")
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(url)
    name = f"fhir_test_{uuid.uuid4().hex[:16]}"
    storage = _ThrowawayMongoStorage(client[name], owns_client=True)
    try:
        if sharded:
            await shard(client, name)
        await storage.open()
    except BaseException:
        with contextlib.suppress(Exception):  # keep open()'s error, the one that matters
            await storage.close()
        raise
    return storage


MONGO_FACTORIES: dict[str, Callable[[Path], Awaitable[Storage]]] = {
    "mongomock": mongomock_storage,
    "mongodb": mongodb_storage,
    "mongodb-sharded": mongodb_sharded_storage,
}
