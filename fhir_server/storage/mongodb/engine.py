"""The engine: `MongoStorage`, the `Storage` port on one MongoDB database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING
from pymongo.errors import DocumentTooLarge, PyMongoError

from fhir_server.errors import TooLargeForStorage
from fhir_server.storage.base import HistoryQuery, Page, StoredResource
from fhir_server.storage.mongodb.blobs import GridBlobStore
from fhir_server.storage.mongodb.coordination import Coordination
from fhir_server.storage.mongodb.documents import RECORD_FIELDS, one
from fhir_server.storage.mongodb.errors import TransactionsUnavailable, plain_reads
from fhir_server.storage.mongodb.history import HISTORY_SORT, history_at, history_match
from fhir_server.storage.mongodb.indexes import (
    CHUNK_INDEXES,
    HISTORY_INDEXES,
    LOCK_INDEXES,
    QUEUE_INDEXES,
    RESOURCE_INDEXES,
)
from fhir_server.storage.mongodb.queues import Queues
from fhir_server.storage.mongodb.reads import Reader
from fhir_server.storage.mongodb.transaction import MongoTx, TxOptions, begin, commit

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

ITER_BATCH = 500
DEFAULT_TIMEOUT_MS = 60_000  # timeoutMS when the URL sets none: no operation hangs for ever


class MongoStorage(Reader, Coordination, Queues):
    """The `Storage` port on one MongoDB database (a replica set or sharded cluster)."""

    def __init__(
        self,
        database: AsyncDatabase[Any],
        *,
        owns_client: bool = False,
        lock_timeout: float = 30.0,
        options: TxOptions | None = None,
    ) -> None:
        """`database`: an async database object (PyMongo's, or a test adapter with the
        same methods); `owns_client`: close its client on `close()`; `lock_timeout`:
        seconds `lock()` waits for another transaction holding the key; `options`: the
        transactions' commit time limit and the server's lifetime limit."""
        Reader.__init__(self, database, None)
        Coordination.__init__(self, database)
        Queues.__init__(self, database)
        self._client = database.client
        self._owns_client = owns_client
        self._lock_timeout = lock_timeout
        self._options = options or TxOptions()

    @classmethod
    def from_url(cls, url: str, database: str | None = None) -> MongoStorage:
        """An engine on `url` (mongodb:// or mongodb+srv://); the database is `database`,
        else the URL's path, else "fhir". Nothing connects before `open()`. Without a
        `timeoutMS` in the URL, every operation is limited to 60 s. Transactions read
        from the primary whatever `readPreference` says (plain reads follow it)."""
        from pymongo import AsyncMongoClient

        extra: dict[str, Any] = (
            {} if "timeoutms=" in url.lower() else {"timeoutMS": DEFAULT_TIMEOUT_MS}
        )
        client: Any = AsyncMongoClient(url, **extra)
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
        await self._db["chunks"].create_indexes(CHUNK_INDEXES)
        await self._db["queue_entries"].create_indexes(QUEUE_INDEXES)
        await self.blobs().create_indexes()

    def blobs(self, name: str = "blobs") -> GridBlobStore:
        """Binary content, in GridFS's layout (see `blobs`); other stores under `name`."""
        return GridBlobStore(self._db, name)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()

    async def vread(self, type: str, id: str, version: int) -> StoredResource | None:
        with plain_reads(False):
            doc = await self._history.find_one(one(type, id, version), RECORD_FIELDS)
            return await self._loader.one(doc) if doc else None

    async def history(self, query: HistoryQuery) -> Page:
        """Versions newest first (ties: higher version, then later written)."""
        with plain_reads(False):
            return await self._history_page(query)

    async def _history_page(self, query: HistoryQuery) -> Page:
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
                .allow_disk_use(True)
            )
            resources = await self._loader.all(await cursor.to_list(None))
        if match:
            total = await self._history.count_documents(match)
        else:  # all of history: the collection's count, not a scan of every version
            total = await self._history.estimated_document_count()
        return Page(resources, total)

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
            resources = await self._loader.all(await cursor.to_list(None))
        return Page(resources, counted[0]["n"] if counted else 0)

    async def iter_current(self, type: str) -> AsyncIterator[StoredResource]:
        """Live resources of `type` in insertion order, fetched in batches by the cursor."""
        cursor = (
            self._resources.find({"type": type, "deleted": False}, RECORD_FIELDS)
            .sort([("seq", ASCENDING)])
            .batch_size(ITER_BATCH)
        )
        async for doc in cursor:
            yield await self._loader.one(doc)

    async def iter_latest(self, type: str) -> AsyncIterator[StoredResource]:
        """Every resource of `type`, tombstones too, by `seq` (set at first creation and
        never changed), a batch per query from the last `seq` seen: a long-lived cursor
        could meet a document twice when a write moves its index entry."""
        after: Any = None
        while True:
            # both values of `deleted` named: the (type, deleted, seq) index gives seq order
            match: dict[str, Any] = {"type": type, "deleted": {"$in": [False, True]}}
            if after is not None:
                match["seq"] = {"$gt": after}
            cursor = (
                self._resources.find(match, {**RECORD_FIELDS, "seq": 1})
                .sort([("seq", ASCENDING)])
                .limit(ITER_BATCH)
            )
            docs = await cursor.to_list(None)
            for doc in docs:
                yield await self._loader.one(doc)
            if len(docs) < ITER_BATCH:
                return
            after = docs[-1]["seq"]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MongoTx]:
        """Commit on normal exit, abort on any exception (cancellation included)."""
        async with self._client.start_session() as session:
            await begin(session, self._options)
            tx = MongoTx(self._db, session, self._lock_timeout, self._options)
            try:
                yield tx
            except PyMongoError as error:
                await _abort(session)
                raise tx.failure(error) from error
            except DocumentTooLarge as error:  # a command past 16 MiB, refused by the driver
                await _abort(session)
                raise TooLargeForStorage(
                    "A request made a database command larger than 16 MiB; split it"
                ) from error
            except BaseException:
                await _abort(session)
                raise
            await commit(session, tx)


async def _abort(session: Any) -> None:
    if session.in_transaction:
        with contextlib.suppress(PyMongoError):  # already aborted, or unreachable
            await session.abort_transaction()
