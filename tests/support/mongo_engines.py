"""Factories for the MongoDB engine under test: on the mongomock adapter, and on a real server.

`MONGO_FACTORIES[name](tmp_path)` returns an opened `MongoStorage` on fresh, empty data;
the caller closes it. "mongomock" always runs (see `mongomock_async` for what it
emulates and what it cannot show). "mongodb" runs on the replica set or sharded cluster
at `FHIR_TEST_MONGODB_URL` (e.g. mongodb://localhost:27017/?replicaSet=rs0) in a fresh
database per test that `close()` drops; without the variable it skips the test.
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
    url = os.environ.get(MONGODB_URL_ENV)
    if not url:
        pytest.skip(f"{MONGODB_URL_ENV} not set: real-MongoDB contract run not executed")
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(url)
    storage = _ThrowawayMongoStorage(client[f"fhir_test_{uuid.uuid4().hex[:16]}"], owns_client=True)
    try:
        await storage.open()
    except BaseException:
        with contextlib.suppress(Exception):  # keep open()'s error, the one that matters
            await storage.close()
        raise
    return storage


MONGO_FACTORIES: dict[str, Callable[[Path], Awaitable[Storage]]] = {
    "mongomock": mongomock_storage,
    "mongodb": mongodb_storage,
}
