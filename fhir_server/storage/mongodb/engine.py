"""The engine: `MongoStorage`, the `Storage` port on one MongoDB database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING

from fhir_server.storage.base import HistoryQuery, Page, StoredResource
from fhir_server.storage.mongodb.coordination import Coordination
from fhir_server.storage.mongodb.documents import RECORD_FIELDS, one, record
from fhir_server.storage.mongodb.errors import TransactionsUnavailable
from fhir_server.storage.mongodb.history import HISTORY_SORT, history_at, history_match
from fhir_server.storage.mongodb.indexes import HISTORY_INDEXES, LOCK_INDEXES, RESOURCE_INDEXES
from fhir_server.storage.mongodb.reads import Reader
from fhir_server.storage.mongodb.transaction import MongoTx, begin, commit

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

ITER_BATCH = 500


class MongoStorage(Reader, Coordination):
    """The `Storage` port on one MongoDB database (a replica set or sharded cluster)."""

    def __init__(
        self, database: AsyncDatabase[Any], *, owns_client: bool = False, lock_timeout: float = 30.0
    ) -> None:
        """`database`: an async database object (PyMongo's, or a test adapter with the
        same methods); `owns_client`: close its client on `close()`; `lock_timeout`:
        seconds `lock()` waits for another transaction holding the key."""
        Reader.__init__(self, database, None)
        Coordination.__init__(self, database)
        self._client = database.client
        self._owns_client = owns_client
        self._lock_timeout = lock_timeout

    @classmethod
    def from_url(cls, url: str, database: str | None = None) -> MongoStorage:
        """An engine on `url` (mongodb:// or mongodb+srv://); the database is `database`,
        else the URL's path, else "fhir". Nothing connects before `open()`."""
        from pymongo import AsyncMongoClient

        client: Any = AsyncMongoClient(url)
        db = client[database] if database else client.get_default_database(default="fhir")
        return cls(db, owns_client=True)

    async def open(self) -> None:
        """Check the server can run transactions, then create the indexes (idempotent)."""
        hello = await self._db.command("hello")
        if "setName" not in hello and hello.get("msg") != "isdbgrid":
            raise TransactionsUnavailable(
                "The MongoDB storage engine needs multi-document transactions, so a replica "
                "set or a sharded cluster; this server is a standalone mongod. A one-node "
                "replica set is enough: start mongod with --replSet rs0, then run "
                "rs.initiate() once."
            )
        await self._resources.create_indexes(RESOURCE_INDEXES)
        await self._history.create_indexes(HISTORY_INDEXES)
        await self._db["locks"].create_indexes(LOCK_INDEXES)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()

    async def vread(self, type: str, id: str, version: int) -> StoredResource | None:
        doc = await self._history.find_one(one(type, id, version), RECORD_FIELDS)
        return record(doc) if doc else None

    async def history(self, query: HistoryQuery) -> Page:
        """Versions newest first (ties: higher version, then later written)."""
        if query.at is not None:
            return await self._history_at(query)
        match = history_match(query)
        resources: list[StoredResource] = []
        if query.count > 0:
            cursor = (
                self._history.find(match, RECORD_FIELDS)
                .sort(list(HISTORY_SORT.items()))
                .skip(query.offset)
                .limit(query.count)
            )
            resources = [record(doc) for doc in await cursor.to_list(None)]
        return Page(resources, await self._history.count_documents(match))

    async def _history_at(self, query: HistoryQuery) -> Page:
        stages = history_at(query)
        counted = await (
            await self._history.aggregate([*stages, {"$count": "n"}], allowDiskUse=True)
        ).to_list(None)
        resources: list[StoredResource] = []
        if query.count > 0:
            page: list[dict[str, Any]] = [
                {"$sort": HISTORY_SORT},
                {"$skip": query.offset},
                {"$limit": query.count},
                {"$project": RECORD_FIELDS},
            ]
            cursor = await self._history.aggregate([*stages, *page], allowDiskUse=True)
            resources = [record(doc) for doc in await cursor.to_list(None)]
        return Page(resources, counted[0]["n"] if counted else 0)

    async def iter_current(self, type: str) -> AsyncIterator[StoredResource]:
        """Live resources of `type` in insertion order, fetched in batches by the cursor."""
        cursor = (
            self._resources.find({"type": type, "deleted": False}, RECORD_FIELDS)
            .sort([("seq", ASCENDING)])
            .batch_size(ITER_BATCH)
        )
        async for doc in cursor:
            yield record(doc)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MongoTx]:
        """Commit on normal exit, abort on any exception (cancellation included)."""
        async with self._client.start_session() as session:
            await begin(session)
            tx = MongoTx(self._db, session, self._lock_timeout)
            try:
                yield tx
            except BaseException:
                if session.in_transaction:
                    await session.abort_transaction()
                raise
            await commit(session, tx)
