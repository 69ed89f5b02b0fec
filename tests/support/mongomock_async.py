"""A thin async adapter over mongomock: the subset of PyMongo's async API that
`fhir_server.storage.mongodb` calls, so its tests run without a MongoDB server.

Surface: `MockClient` (`get_database`, `start_session`, `drop_database`, `close`),
`MockDatabase` (`client`, `name`, `db[name]`, `command("hello" | "ping")`),
`MockCollection` (`insert_one`, `update_one`, `delete_one`, `delete_many`, `find_one`, `find`,
`count_documents`, `aggregate`, `create_indexes`, `index_information`), and `MockCursor`
(`sort`, `skip`, `limit`, `batch_size`, `to_list`, `async for`). Methods PyMongo makes
coroutines are coroutines here; every one takes `session=`. Queries, updates and aggregations are
mongomock's, so its query semantics stand in for the server's.

mongomock has no sessions or transactions. This adapter EMULATES them, and `hello`
reports a replica set because of that. What is emulated:

- Snapshot: `start_transaction` forks the committed data (a shallow copy of every
  collection; a document is deep-copied before the transaction first changes it).
  Reads and writes that pass the session use the fork, so they see the transaction's
  own writes and the data as it was at the start; other readers see only committed data.
- Atomicity: `commit_transaction` copies the documents the transaction wrote into the
  committed data at once (nothing else runs in between: one event loop, no awaits);
  `abort_transaction` drops the fork.
- Write conflicts, as MongoDB reports them (OperationFailure code 112 WriteConflict,
  label TransientTransactionError): a transaction's write fails if another transaction
  wrote the same document and has not ended, or committed a write to it after this
  transaction started. After that, the transaction's later operations and its commit
  fail with NoSuchTransaction (code 251), as on the server.

What is NOT shown by the mock: real isolation and durability; the server's blocking of
a non-transactional write on a document a pending transaction wrote (here it goes
through, and that transaction then fails at commit); secondary unique indexes at commit
(only `_id` uniqueness is checked); lock timeouts, elections, retryable writes. A
concurrency result is only real when the contract suite has run on a real replica set
(`FHIR_TEST_MONGODB_URL`). The fork reaches into mongomock's stores (`_documents`,
`_store`); it is written against the pinned mongomock 4.3.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import mongomock
import mongomock.collection
from mongomock.store import CollectionStore, DatabaseStore, ServerStore
from pymongo.errors import InvalidOperation, OperationFailure
from pymongo.operations import IndexModel

Key = tuple[str, str, Any]  # (database, collection, _id)


def _failure(message: str, code: int) -> OperationFailure:
    details = {"errmsg": message, "code": code, "errorLabels": ["TransientTransactionError"]}
    return OperationFailure(message, code, details)


def _fork(server: ServerStore) -> ServerStore:
    """A copy of every collection that shares documents until one is written (copy-on-write)."""
    fork = ServerStore()
    for db_name, db in server._databases.items():
        fork_db = fork._databases[db_name] = DatabaseStore()
        for name, coll in db._collections.items():
            copied = fork_db._collections[name] = CollectionStore(name)
            copied._documents = OrderedDict(coll._documents)
            copied.indexes = dict(coll.indexes)
            copied._is_force_created = coll._is_force_created
    return fork


class _Transaction:
    """One emulated transaction: its fork, the documents it wrote, whether it failed."""

    def __init__(self, client: MockClient) -> None:
        self.started_at = client._clock
        self.data: Any = mongomock.MongoClient(_store=_fork(client._sync._store))
        self.written: set[Key] = set()
        self.failed = False

    def check(self) -> None:
        if self.failed:
            raise _failure("Transaction has been aborted (NoSuchTransaction)", 251)


class MockSession:
    """An `AsyncClientSession` look-alike whose transactions are emulated (module docstring)."""

    def __init__(self, client: MockClient) -> None:
        self._client = client
        self._tx: _Transaction | None = None

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    async def start_transaction(self, **options: Any) -> _TransactionContext:
        """Begin a transaction; options (read/write concern...) are accepted and ignored."""
        if self._tx is not None:
            raise InvalidOperation("Transaction already in progress")
        self._tx = _Transaction(self._client)
        return _TransactionContext(self)

    async def commit_transaction(self) -> None:
        tx, self._tx = self._require(), None
        self._client._commit(tx)

    async def abort_transaction(self) -> None:
        tx, self._tx = self._require(), None
        self._client._release(tx)

    async def end_session(self) -> None:
        if self._tx is not None:
            await self.abort_transaction()

    async def __aenter__(self) -> MockSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.end_session()

    def _require(self) -> _Transaction:
        if self._tx is None:
            raise InvalidOperation("No transaction started")
        return self._tx


class _TransactionContext:
    """What `start_transaction` returns: commits on normal exit, aborts on an exception."""

    def __init__(self, session: MockSession) -> None:
        self._session = session

    async def __aenter__(self) -> _TransactionContext:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._session.in_transaction:
            if exc is None:
                await self._session.commit_transaction()
            else:
                await self._session.abort_transaction()


class MockClient:
    """An `AsyncMongoClient` look-alike over one mongomock server (the committed data)."""

    def __init__(self, sync: mongomock.MongoClient[Any] | None = None) -> None:
        # Any: mongomock's stub calls its client pymongo's, which has no _store to fork
        self._sync: Any = sync or mongomock.MongoClient()
        self._clock = 0  # bumped by every committed write
        self._modified: dict[Key, int] = {}  # when each document was last committed
        self._pending: dict[Key, _Transaction] = {}  # documents written by open transactions

    def get_database(self, name: str) -> MockDatabase:
        return MockDatabase(self, name)

    __getitem__ = get_database

    def start_session(self, **options: Any) -> MockSession:
        return MockSession(self)

    async def drop_database(self, name: str) -> None:
        self._sync.drop_database(name)

    async def close(self) -> None:
        """Nothing to release."""

    # -- the transaction emulation ----------------------------------------------------

    def _claim(self, tx: _Transaction, keys: Sequence[Key]) -> None:
        """Record `tx`'s writes, or fail it with a WriteConflict as the server would."""
        for key in keys:
            owner = self._pending.get(key, tx)
            if owner is not tx or self._modified.get(key, 0) > tx.started_at:
                tx.failed = True
                self._release(tx)
                raise _failure(
                    "WriteConflict error: this operation conflicted with another "
                    "operation. Please retry your operation or multi-document "
                    "transaction.",
                    112,
                )
            self._pending[key] = tx
            tx.written.add(key)

    def _commit(self, tx: _Transaction) -> None:
        try:
            tx.check()
            if any(self._modified.get(key, 0) > tx.started_at for key in tx.written):
                raise _failure("WriteConflict error at commit", 112)
            self._clock += 1
            for key in tx.written:
                self._apply(tx, key)
                self._modified[key] = self._clock
        finally:
            self._release(tx)

    def _apply(self, tx: _Transaction, key: Key) -> None:
        db, coll, id = key
        source, target = tx.data._store[db][coll], self._sync._store[db][coll]
        if id in source:
            target[id] = source[id]  # the fork's own copy: the fork is dropped after this
        elif id in target:
            del target[id]

    def _release(self, tx: _Transaction) -> None:
        for key in tx.written:
            if self._pending.get(key) is tx:
                del self._pending[key]

    def _committed_write(self, keys: Sequence[Key]) -> None:
        self._clock += 1
        for key in keys:
            self._modified[key] = self._clock


class MockDatabase:
    """An `AsyncDatabase` look-alike."""

    def __init__(self, client: MockClient, name: str) -> None:
        self.client = client
        self.name = name

    def __getitem__(self, name: str) -> MockCollection:
        return MockCollection(self, name)

    async def command(self, command: str | dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        name = command if isinstance(command, str) else next(iter(command))
        if name == "ping":
            return {"ok": 1.0}
        if name == "hello":  # a replica set member: the adapter emulates transactions
            return {"isWritablePrimary": True, "setName": "mongomock", "ok": 1.0}
        raise NotImplementedError(f"mongomock adapter: command {name!r}")


def _transaction(session: MockSession | None) -> _Transaction | None:
    if session is None or session._tx is None:
        return None
    session._tx.check()
    return session._tx


class MockCollection:
    """An `AsyncCollection` look-alike; `session=` routes to the transaction's fork."""

    def __init__(self, db: MockDatabase, name: str) -> None:
        self._db = db
        self.name = name

    def _sync(self, tx: _Transaction | None) -> Any:
        data = tx.data if tx is not None else self._db.client._sync
        return data[self._db.name][self.name]

    # -- reads ------------------------------------------------------------------------

    async def find_one(
        self, filter: Any = None, projection: Any = None, *, session: MockSession | None = None
    ) -> dict[str, Any] | None:
        return self._sync(_transaction(session)).find_one(filter, projection)

    def find(
        self, filter: Any = None, projection: Any = None, *, session: MockSession | None = None
    ) -> MockCursor:
        tx = _transaction(session)
        return MockCursor(lambda: self._sync(tx).find(filter, projection))

    async def count_documents(self, filter: Any, *, session: MockSession | None = None) -> int:
        return self._sync(_transaction(session)).count_documents(filter)

    async def aggregate(
        self, pipeline: list[dict[str, Any]], *, session: MockSession | None = None, **options: Any
    ) -> MockCursor:
        docs = list(self._sync(_transaction(session)).aggregate(pipeline))
        return MockCursor(lambda: iter(docs))

    async def index_information(self) -> dict[str, Any]:
        return self._sync(None).index_information()

    # -- writes -----------------------------------------------------------------------

    async def insert_one(
        self, document: dict[str, Any], *, session: MockSession | None = None
    ) -> Any:
        return self._write(session, None, lambda coll: coll.insert_one(document))

    async def update_one(
        self,
        filter: dict[str, Any],
        update: dict[str, Any],
        *,
        upsert: bool = False,
        session: MockSession | None = None,
    ) -> Any:
        return self._write(
            session, filter, lambda coll: coll.update_one(filter, update, upsert=upsert)
        )

    async def delete_one(
        self, filter: dict[str, Any], *, session: MockSession | None = None
    ) -> Any:
        return self._write(session, filter, lambda coll: coll.delete_one(filter))

    async def delete_many(
        self, filter: dict[str, Any], *, session: MockSession | None = None
    ) -> int:
        """Delete each match as its own write (outside a transaction, as GridFS does)."""
        deleted = 0
        for doc in list(self._sync(_transaction(session)).find(filter, {"_id": 1})):
            await self.delete_one({"_id": doc["_id"]}, session=session)
            deleted += 1
        return deleted

    async def create_indexes(self, indexes: list[IndexModel], **kwargs: Any) -> list[str]:
        return self._sync(None).create_indexes(indexes)

    def _write(
        self, session: MockSession | None, filter: dict[str, Any] | None, op: Callable[[Any], Any]
    ) -> Any:
        """Run a single-document write; record it (and check conflicts) by its _id."""
        tx = _transaction(session)
        coll = self._sync(tx)
        ids = self._matched(coll, filter, copy_on_write=tx is not None)
        try:
            result = op(coll)
        except OperationFailure:
            if tx is not None:  # a failed write aborts the server's transaction too
                tx.failed = True
                self._db.client._release(tx)
            raise
        ids.extend(
            i
            for i in (getattr(result, "inserted_id", None), getattr(result, "upserted_id", None))
            if i is not None
        )
        keys = [(self._db.name, self.name, i) for i in ids]
        if tx is not None:
            self._db.client._claim(tx, keys)
        else:
            self._db.client._committed_write(keys)
        return result

    @staticmethod
    def _matched(coll: Any, filter: dict[str, Any] | None, *, copy_on_write: bool) -> list[Any]:
        """The _id the write will change; in a fork, give it its own copy first."""
        if filter is None:
            return []
        doc = coll.find_one(filter, {"_id": 1})
        if doc is None:
            return []
        if copy_on_write:  # mongomock updates in place; the committed data must not change
            store = coll._store
            store[doc["_id"]] = copy.deepcopy(store[doc["_id"]])
        return [doc["_id"]]


class MockCursor:
    """An `AsyncCursor` look-alike; the query runs when results are first asked for."""

    def __init__(self, run: Callable[[], Any]) -> None:
        self._run = run
        self._sort: list[tuple[str, int]] | None = None
        self._skip = 0
        self._limit = 0

    def sort(self, keys: list[tuple[str, int]]) -> MockCursor:
        self._sort = keys
        return self

    def skip(self, n: int) -> MockCursor:
        self._skip = n
        return self

    def limit(self, n: int) -> MockCursor:
        self._limit = n
        return self

    def batch_size(self, n: int) -> MockCursor:
        return self

    def _results(self) -> Iterator[dict[str, Any]]:
        cursor = self._run()
        if isinstance(cursor, mongomock.collection.Cursor):
            if self._sort:
                cursor = cursor.sort(self._sort)
            cursor = cursor.skip(self._skip).limit(self._limit)
        return iter(cursor)

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        docs = list(self._results())
        return docs if length is None else docs[:length]

    def __aiter__(self) -> MockCursor:
        self._iter = self._results()
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return next(self._iter)
        except StopIteration:
            raise StopAsyncIteration from None


def mock_database(name: str = "fhir", client: MockClient | None = None) -> MockDatabase:
    """A database on a fresh (or the given) mock client."""
    return (client or MockClient()).get_database(name)
