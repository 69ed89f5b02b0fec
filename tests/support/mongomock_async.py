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

Limits and faults (`mongomock_limits`): `client.limits` (document, command and regex
limits, the sort memory limit without allowDiskUse, the transaction lifetime and size)
are enforced with PyMongo's error classes and the server's codes; `client.fail_points`
injects errors like the server's `failCommand` fail point.

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

from tests.support import mongomock_limits as limits
from tests.support.mongomock_limits import FailPoints, ServerLimits

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
        self.clock = limits.TransactionClock(client.limits)

    def check(self) -> None:
        if not self.failed and self.clock.expired():
            self.failed = True
            raise limits.expired_error()
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
        """Begin a transaction; its options (read/write concern...) are recorded, not applied."""
        if self._tx is not None:
            raise InvalidOperation("Transaction already in progress")
        self._client.transaction_options.append(options)
        self._tx = _Transaction(self._client)
        return _TransactionContext(self)

    async def commit_transaction(self) -> None:
        tx = self._require()
        self._client.fail_points.check("commitTransaction", True)
        self._tx = None
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
        self.limits = ServerLimits()
        self.fail_points = FailPoints()
        self.transaction_options: list[dict[str, Any]] = []  # as start_transaction got them

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

    def _command(self, name: str, session: MockSession | None, *parts: Any) -> _Transaction | None:
        """The checks every command passes first: fail points, command size, regexes."""
        client = self._db.client
        client.fail_points.check(name, session is not None and session.in_transaction)
        limits.check_command(client.limits, *parts)
        return _transaction(session)

    # -- reads ------------------------------------------------------------------------

    async def find_one(
        self, filter: Any = None, projection: Any = None, *, session: MockSession | None = None
    ) -> dict[str, Any] | None:
        return self._sync(self._command("find", session, filter)).find_one(filter, projection)

    def find(
        self, filter: Any = None, projection: Any = None, *, session: MockSession | None = None
    ) -> MockCursor:
        tx = self._command("find", session, filter, projection)
        return MockCursor(lambda: self._sync(tx).find(filter, projection), self._db.client.limits)

    async def count_documents(self, filter: Any, *, session: MockSession | None = None) -> int:
        return self._sync(self._command("aggregate", session, filter)).count_documents(filter)

    async def estimated_document_count(self) -> int:
        return int(self._sync(self._command("count", None)).estimated_document_count())

    async def distinct(
        self, key: str, filter: Any = None, *, session: MockSession | None = None
    ) -> list[Any]:
        return list(self._sync(self._command("distinct", session, filter)).distinct(key, filter))

    async def aggregate(
        self, pipeline: list[dict[str, Any]], *, session: MockSession | None = None, **options: Any
    ) -> MockCursor:
        coll = self._sync(self._command("aggregate", session, pipeline))
        sorts = [i for i, stage in enumerate(pipeline) if "$sort" in stage]
        if sorts:  # what enters the first blocking sort must fit, unless spilled to disk
            entering = list(coll.aggregate(pipeline[: sorts[0]])) if sorts[0] else coll.find()
            limits.check_sort(
                self._db.client.limits, list(entering), bool(options.get("allowDiskUse"))
            )
        docs = list(coll.aggregate(pipeline))
        return MockCursor(lambda: iter(docs), self._db.client.limits)

    async def index_information(self) -> dict[str, Any]:
        return self._sync(None).index_information()

    # -- writes -----------------------------------------------------------------------

    async def insert_one(
        self, document: dict[str, Any], *, session: MockSession | None = None
    ) -> Any:
        self._db.client.fail_points.check("insert", session is not None and session.in_transaction)
        limits.check_document(self._db.client.limits, document)
        return self._write(session, None, lambda coll: coll.insert_one(document), document)

    async def update_one(
        self,
        filter: dict[str, Any],
        update: dict[str, Any],
        *,
        upsert: bool = False,
        session: MockSession | None = None,
    ) -> Any:
        self._db.client.fail_points.check("update", session is not None and session.in_transaction)
        limits.check_command(self._db.client.limits, filter, update)
        return self._write(
            session, filter, lambda coll: coll.update_one(filter, update, upsert=upsert), update
        )

    async def delete_one(
        self, filter: dict[str, Any], *, session: MockSession | None = None
    ) -> Any:
        self._db.client.fail_points.check("delete", session is not None and session.in_transaction)
        limits.check_command(self._db.client.limits, filter)
        return self._write(session, filter, lambda coll: coll.delete_one(filter), None)

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
        self,
        session: MockSession | None,
        filter: dict[str, Any] | None,
        op: Callable[[Any], Any],
        payload: Any,
    ) -> Any:
        """Run a single-document write; record it (and check conflicts) by its _id."""
        tx = _transaction(session)
        coll = self._sync(tx)
        ids = self._matched(coll, filter, copy_on_write=tx is not None)
        before = {i: copy.deepcopy(coll._store[i]) for i in ids} if tx is None else {}
        try:
            result = op(coll)
            written = [getattr(result, "upserted_id", None), *ids]
            for i in written:
                if i is not None and i in coll._store:
                    limits.check_updated(self._db.client.limits, coll._store[i])
            if tx is not None and payload is not None:
                tx.clock.add_write(payload)
        except OperationFailure:
            for i, doc in before.items():  # outside a transaction: the write did not happen
                coll._store[i] = doc
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

    def __init__(self, run: Callable[[], Any], server: ServerLimits) -> None:
        self._run = run
        self._limits = server
        self._disk = False
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

    def allow_disk_use(self, allow: bool) -> MockCursor:
        self._disk = allow
        return self

    def _results(self) -> Iterator[dict[str, Any]]:
        cursor = self._run()
        if isinstance(cursor, mongomock.collection.Cursor):
            if self._sort:  # measured as a blocking sort: no index provides the order here
                limits.check_sort(self._limits, list(cursor.clone()), self._disk)
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
