"""The MongoDB storage engine, on PyMongo's async API (`pymongo.AsyncMongoClient`).

Collections (one database; name from the URL path, default "fhir"):

    resources  _id "Type/id": the current version of every resource, a deletion kept as
               a tombstone. Fields: type, id, version, last_updated, deleted, method, data
               (the JSON bytes, BSON binary, returned unchanged), seq (an ObjectId taken at
               first creation: the insertion order that breaks sort ties; strictly
               increasing within one server process, ordered to the second across
               processes, with no shared counter document for every create to contend
               on), and one array
               of index values per search-parameter type, each element naming its
               parameter `p` so a condition matches parameter and value in one element
               with `$elemMatch`:
                   tok [{p, s, c, t}]  str [{p, v, x}]  ref [{p, t, i, u, v}]
                   dt [{p, lo, hi}]    num [{p, lo, hi}]  qty [{p, lo, hi, s, c, u}]
                   uri [{p, u}]
               (None-valued keys are left out; `{s: null}` matches a missing s.)
    history    _id "Type/id/version" (unique: two writers cannot both create version n),
               with type, id, version, last_updated, deleted, method, data, seq.
    locks      _id = a lock key; claimed inside a transaction by `lock()`; a TTL index
               removes keys nobody claimed for a day.

Indexes (`open()`, idempotent) are compound multikey indexes that lead with `type` and
the parameter name, e.g. (type, tok.p, tok.c, tok.s), so every positive condition is an
index range; see `_RESOURCE_INDEXES`.

Transactions need a replica set or a sharded cluster (multi-document transactions);
`open()` refuses a standalone server with `TransactionsUnavailable`. A `transaction()` is
one session transaction (snapshot read concern, majority write concern) and every read
and write inside it passes the session, so it reads its own writes. Concurrency:

- `write` inserts the history document (unique `_id`) and then replaces the current one
  conditionally: `insert_one` when the expected version is 0, otherwise `update_one`
  filtered by `version == expected`. A duplicate key, no match, or a server WriteConflict
  (a concurrent transaction wrote the same document first) raises `VersionConflict`.
- `lock(key)` upserts `locks/{key}` with `$inc` inside the transaction, so a second
  transaction claiming the key hits a WriteConflict. When the lock is the transaction's
  first operation, the engine restarts the transaction and waits (backing off) until the
  holder ends, which serializes conditional creates; later in a transaction it raises
  `TransactionConflict` (a `VersionConflict`) so the service retries the whole unit.
- A commit that fails with a TransientTransactionError raises `TransactionConflict`; one
  with UnknownTransactionCommitResult is retried (commit is idempotent).

Scale-out: shard `resources` and `history` on {type: 1, id: "hashed"}. Every version of a
resource then lives on one shard, so the unique `_id`s that decide version races are
enforced there and a single-resource write is a single-shard transaction; point reads
and writes name type and id (`_one`) so they are routed to that shard; UUID ids spread
writes evenly. Searches fan out to the shards that hold the type.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from fhir_server.errors import BadRequest, VersionConflict
from fhir_server.search.conditions import (
    Clause,
    Condition,
    DateCondition,
    IdCondition,
    LastUpdatedCondition,
    MissingCondition,
    NumberCondition,
    Prefix,
    QuantityCondition,
    ReferenceCondition,
    SearchQuery,
    StringCondition,
    TokenCondition,
    UriCondition,
)
from fhir_server.search.values import (
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.storage.base import HistoryQuery, Page, StoredResource

if TYPE_CHECKING:
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase

Filter = dict[str, Any]
ITER_BATCH = 500
LOCK_TTL_SECONDS = 86400
_WRITE_CONFLICT = 112  # the server's WriteConflict error code


class TransactionsUnavailable(RuntimeError):
    """The server is a standalone mongod: multi-document transactions need a replica set."""


class TransactionConflict(VersionConflict):
    """A concurrent transaction won a lock or a commit; the caller retries the whole unit.

    A `VersionConflict`, so the service's retry loop handles it like a lost version race.
    `type`/`id` name what conflicted: ("lock", key) or the last resource written.
    """


# -- documents ------------------------------------------------------------------------

_RECORD_FIELDS = {f: 1 for f in ("type", "id", "version", "last_updated", "deleted",
                                 "method", "data")}


def _key(type: str, id: str) -> str:
    return f"{type}/{id}"


def _one(type: str, id: str, version: int | None = None) -> Filter:
    """The filter for one resource (or one version), with type and id spelled out so a
    collection sharded on {type, id} routes it to one shard."""
    key = _key(type, id) if version is None else f"{_key(type, id)}/{version}"
    return {"_id": key, "type": type, "id": id}


def _record(doc: dict[str, Any]) -> StoredResource:
    return StoredResource(doc["type"], doc["id"], doc["version"], doc["last_updated"],
                          doc["deleted"], bytes(doc["data"]), doc["method"])


def _version_fields(rec: StoredResource) -> dict[str, Any]:
    return {"type": rec.type, "id": rec.id, "version": rec.version,
            "last_updated": rec.last_updated, "deleted": rec.deleted, "method": rec.method,
            "data": rec.data}


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that are not None (a missing key matches `{key: null}` in queries)."""
    return {k: v for k, v in fields.items() if v is not None}


def _index_element(value: IndexValue) -> tuple[str, dict[str, Any]]:
    """The index array a value goes to and its element there."""
    match value:
        case TokenValue():
            return "tok", _present(p=value.param, s=value.system, c=value.code, t=value.text)
        case StringValue():
            return "str", {"p": value.param, "v": value.value, "x": value.exact}
        case ReferenceValue():
            return "ref", _present(p=value.param, t=value.target_type, i=value.target_id,
                                   u=value.url, v=value.version)
        case DateValue():
            return "dt", {"p": value.param, "lo": value.low, "hi": value.high}
        case NumberValue():
            return "num", {"p": value.param, "lo": value.low, "hi": value.high}
        case QuantityValue():
            return "qty", _present(p=value.param, lo=value.low, hi=value.high,
                                   s=value.system, c=value.code, u=value.unit)
        case UriValue():
            return "uri", {"p": value.param, "u": value.uri}
    raise TypeError(f"Not an index value: {value!r}")


_INDEX_FIELDS = ("tok", "str", "ref", "dt", "num", "qty", "uri")
_FIELD_OF_KIND = {"token": "tok", "string": "str", "reference": "ref", "date": "dt",
                  "number": "num", "quantity": "qty", "uri": "uri"}


def _index_fields(index: Iterable[IndexValue]) -> dict[str, list[dict[str, Any]]]:
    """Every index array, empty ones included, so an update replaces them all."""
    fields: dict[str, list[dict[str, Any]]] = {name: [] for name in _INDEX_FIELDS}
    for value in dict.fromkeys(index):  # drop exact duplicates
        name, element = _index_element(value)
        fields[name].append(element)
    return fields


# -- indexes --------------------------------------------------------------------------


def _ix(*keys: str | tuple[str, int], **options: Any) -> IndexModel:
    spec = [k if isinstance(k, tuple) else (k, ASCENDING) for k in keys]
    name = "_".join(k for k, _ in spec)
    return IndexModel(spec, name=name, **options)


_RESOURCE_INDEXES = [
    # Sort orders; a search of several types merges their (type, ...) ranges.
    _ix("type", "seq"),  # insertion order: the default sort and export
    _ix("type", "id", "seq"),
    _ix("type", "last_updated", "seq"),
    # One per kind of condition: each positive condition is a range of one of these.
    _ix("type", "tok.p", "tok.c", "tok.s"),
    _ix("type", "str.p", "str.v"),
    _ix("type", "str.p", "str.x"),
    _ix("type", "ref.p", "ref.i", "ref.t"),
    _ix("type", "ref.p", "ref.u", "ref.v"),
    _ix("type", "dt.p", "dt.lo", "dt.hi"),
    _ix("type", "dt.p", "dt.hi", "dt.lo"),  # gt/sa bound the high end
    _ix("type", "num.p", "num.lo", "num.hi"),
    _ix("type", "qty.p", "qty.c", "qty.lo", "qty.hi"),
    _ix("type", "uri.p", "uri.u"),
]
_HISTORY_INDEXES = [
    _ix("type", "id", "last_updated", "version", "seq"),
    _ix("type", "last_updated", "version", "seq"),
    _ix("last_updated", "version", "seq"),
]
_LOCK_INDEXES = [_ix("claimed_at", expireAfterSeconds=LOCK_TTL_SECONDS)]


# -- search: conditions to filters ----------------------------------------------------

Alternative = list[tuple[str, str, Any]]  # (lo | hi, operator, value), all must hold


def _range(prefix: Prefix, low: Any, high: Any) -> list[Alternative]:
    """`range_matches` on an indexed range [lo, hi], as alternatives that each use an index."""
    contained: Alternative = [("lo", "$gte", low), ("hi", "$lte", high)]
    above: Alternative = [("hi", "$gt", high)]
    below: Alternative = [("lo", "$lt", low)]
    rules: dict[str, list[Alternative]] = {
        "eq": [contained],
        "ne": [below, above],
        "gt": [above],
        "lt": [below],
        "ge": [above, contained],
        "le": [below, contained],
        "sa": [[("lo", "$gt", high)]],
        "eb": [[("hi", "$lt", low)]],
        "ap": [[("lo", "$lte", high), ("hi", "$gte", low)]],
    }
    return rules[prefix]


def _bounds(alternative: Alternative, lo: str, hi: str) -> Filter:
    """One alternative on the fields named `lo` and `hi` (the same field for a point)."""
    out: Filter = {}
    for end, op, value in alternative:
        out.setdefault(lo if end == "lo" else hi, {})[op] = value
    return out


def _any_of(filters: list[Filter]) -> Filter:
    if not filters:
        return {"_id": {"$in": []}}  # an empty OR matches nothing
    return filters[0] if len(filters) == 1 else {"$or": filters}


def _elem(field: str, param: str, *alternatives: Filter) -> Filter:
    """Some element of `field` is for `param` and matches one of `alternatives`."""
    return _any_of([{field: {"$elemMatch": {"p": param, **alt}}} for alt in alternatives or ({},)])


def _successor(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (None: no bound)."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(0xE000 if 0xD800 <= last <= 0xDFFF else last)
        prefix = prefix[:-1]
    return None


def _starts_with(field: str, prefix: str) -> Filter:
    """`field` starts with `prefix`, as an index range: strings compare by UTF-8 bytes,
    which is code point order, so no regex (and no escaping) is needed."""
    upper = _successor(prefix)
    if upper is None:
        return {}
    return {field: {"$gte": prefix, "$lt": upper}}


def _token(c: TokenCondition) -> Filter:
    match = _present(c=c.code)
    if c.system is not None:
        match["s"] = c.system or None  # "": the value has no system
    if c.negate:
        return {"tok": {"$not": {"$elemMatch": {"p": c.param, **match}}}}
    return _elem("tok", c.param, match)


def _string(c: StringCondition) -> Filter:
    if c.mode == "exact":
        return _elem("str", c.param, {"x": c.value})
    if c.mode == "contains":
        # A substring cannot use index bounds; the regex scans the (type, p, v) keys.
        return _elem("str", c.param, {"v": {"$regex": _escape(c.value)}} if c.value else {})
    return _elem("str", c.param, _starts_with("v", c.value))


def _escape(text: str) -> str:
    """`text` as a literal in a PCRE pattern (every non-alphanumeric escaped)."""
    return "".join(ch if ch.isalnum() or ch == "_" or ord(ch) > 127 else "\\" + ch
                   for ch in text)


def _reference(c: ReferenceCondition) -> Filter:
    version = _present(v=c.version)
    alternatives = []
    if c.target_id is not None or c.url is None:
        alternatives.append(_present(i=c.target_id, t=c.target_type) | version)
    if c.url is not None:
        alternatives.append({"u": c.url} | version)
    return _elem("ref", c.param, *alternatives)


def _ranged(field: str, c: DateCondition | NumberCondition | QuantityCondition) -> Filter:
    unit = _present(c=c.code, s=c.system) if isinstance(c, QuantityCondition) else {}
    alternatives = [unit | _bounds(a, "lo", "hi") for a in _range(c.prefix, c.low, c.high)]
    return _elem(field, c.param, *alternatives)


def _uri(c: UriCondition) -> Filter:
    if c.mode == "below":
        return _elem("uri", c.param, _starts_with("u", c.uri))
    if c.mode == "above":  # the indexed uri is a prefix of c.uri: look each prefix up
        return _elem("uri", c.param, {"u": {"$in": [c.uri[:n] for n in range(1, len(c.uri) + 1)]}})
    return _elem("uri", c.param, {"u": c.uri})


def _missing(c: MissingCondition) -> Filter:
    field = _FIELD_OF_KIND[c.param_type]
    if c.missing:
        return {field: {"$not": {"$elemMatch": {"p": c.param}}}}
    return _elem(field, c.param)


def _last_updated(c: LastUpdatedCondition) -> Filter:
    """`range_matches` with the point [t, t], t = last_updated."""
    return _any_of([_bounds(a, "last_updated", "last_updated")
                    for a in _range(c.prefix, c.low, c.high)])


def _ids(c: IdCondition, types: Sequence[str]) -> Filter:
    """`_id` as exact `_id` keys when the types are known, else on the id field."""
    if types:
        return {"_id": {"$in": [_key(t, i) for t in types for i in c.ids]}}
    return {"id": {"$in": list(c.ids)}}


def _condition(c: Condition, types: Sequence[str]) -> Filter:
    match c:
        case TokenCondition():
            return _token(c)
        case StringCondition():
            return _string(c)
        case ReferenceCondition():
            return _reference(c)
        case DateCondition():
            return _ranged("dt", c)
        case NumberCondition():
            return _ranged("num", c)
        case QuantityCondition():
            return _ranged("qty", c)
        case UriCondition():
            return _uri(c)
        case MissingCondition():
            return _missing(c)
        case IdCondition():
            return _ids(c, types)
        case LastUpdatedCondition():
            return _last_updated(c)
    raise BadRequest(f"Search condition {type(c).__name__} is not supported by this engine")


def _clause(clause: Clause, types: Sequence[str]) -> Filter:
    """OR of the clause's conditions."""
    return _any_of([_condition(c, types) for c in clause])


def _order_clauses(filters: list[Filter]) -> list[Filter]:
    """The clause filters in evaluation order.

    The query planner chooses the index itself (it races candidate plans); this is the
    place to put the most selective indexed clause first, e.g. from parameter statistics,
    or to turn it into an index hint. Until then, the order of the query.
    """
    return filters


def search_filter(query: SearchQuery, types: Sequence[str]) -> Filter:
    """The filter for the query's live resources of `types` (empty: no type constraint)."""
    out: Filter = {"deleted": False}
    if types:
        out["type"] = types[0] if len(types) == 1 else {"$in": list(types)}
    clauses = _order_clauses([_clause(clause, types) for clause in query.clauses])
    if clauses:
        out["$and"] = clauses
    return out


_SORT_FIELDS = {"_id": "id", "_lastUpdated": "last_updated"}


def search_sort(query: SearchQuery) -> list[tuple[str, int]]:
    keys = []
    for key in query.sort:
        field = _SORT_FIELDS.get(key.param)
        if field is None:
            raise BadRequest(f"Sorting by '{key.param}' is not supported", expression=("_sort",))
        keys.append((field, DESCENDING if key.descending else ASCENDING))
    return [*keys, ("seq", ASCENDING)]


# -- history --------------------------------------------------------------------------

_HISTORY_SORT = {"last_updated": DESCENDING, "version": DESCENDING, "seq": DESCENDING}


def _history_match(q: HistoryQuery, *, since: bool = True) -> Filter:
    out: Filter = _present(type=q.type, id=q.id if q.type is not None else None)
    window = _present(**{"$gte": q.since if since else None, "$lte": q.at})
    if window:
        out["last_updated"] = window
    return out


def _history_at(q: HistoryQuery) -> list[Filter]:
    """Aggregation stages: per resource, its newest version at `q.at`, if written since
    `q.since`. (Total and page are two aggregations: one `$facet` document could pass
    the 16 MiB document limit with a page of large resources.)"""
    stages: list[Filter] = [
        {"$match": _history_match(q, since=False)},
        {"$sort": {"version": DESCENDING}},
        {"$group": {"_id": {"t": "$type", "i": "$id"}, "doc": {"$first": "$$ROOT"}}},
        {"$replaceRoot": {"newRoot": "$doc"}},
    ]
    if q.since is not None:
        stages.append({"$match": {"last_updated": {"$gte": q.since}}})
    return stages


# -- errors ---------------------------------------------------------------------------


def _is_conflict(error: PyMongoError) -> bool:
    """A lost race: a duplicate key, or a write conflict with another transaction."""
    return (isinstance(error, DuplicateKeyError)
            or error.has_error_label("TransientTransactionError")
            or getattr(error, "code", None) == _WRITE_CONFLICT)


# -- reads shared by the storage and its transactions ---------------------------------


class _Reader:
    """Reads on the three collections, within `session` when there is one."""

    def __init__(self, db: AsyncDatabase[Any], session: AsyncClientSession | None) -> None:
        self._db = db
        self._session = session
        self._resources: AsyncCollection[Any] = db["resources"]
        self._history: AsyncCollection[Any] = db["history"]

    async def read(self, type: str, id: str) -> StoredResource | None:
        doc = await self._resources.find_one(_one(type, id), _RECORD_FIELDS,
                                             session=self._session)
        return _record(doc) if doc else None

    async def search(self, query: SearchQuery) -> Page:
        filter = search_filter(query, query.types or await self._types())
        resources: list[StoredResource] = []
        if query.count > 0:
            cursor = (self._resources.find(filter, _RECORD_FIELDS, session=self._session)
                      .sort(search_sort(query)).skip(query.offset).limit(query.count))
            resources = [_record(doc) for doc in await cursor.to_list(None)]
        total = None
        if query.total != "none":
            total = await self._resources.count_documents(filter, session=self._session)
        return Page(resources, total)

    async def _types(self) -> list[str]:
        """The resource types present, so a system-wide search can use the type indexes."""
        cursor = await self._resources.aggregate([{"$group": {"_id": "$type"}}],
                                                 session=self._session)
        return sorted(doc["_id"] for doc in await cursor.to_list(None))


# -- transactions ---------------------------------------------------------------------


class MongoTx(_Reader):
    """One session transaction; reads and writes pass the session (reads see own writes)."""

    def __init__(self, db: AsyncDatabase[Any], session: AsyncClientSession,
                 lock_timeout: float) -> None:
        super().__init__(db, session)
        self._tx_session = session
        self._lock_timeout = lock_timeout
        self._used = False  # whether any operation ran: a restart would then lose it
        self.last_written = ("transaction", "")

    async def read(self, type: str, id: str) -> StoredResource | None:
        self._used = True
        return await super().read(type, id)

    async def search(self, query: SearchQuery) -> Page:
        self._used = True
        return await super().search(query)

    async def write(
        self, rec: StoredResource, index: Sequence[IndexValue], *, expected_version: int
    ) -> None:
        """Store a new version if the current one is `expected_version`, else VersionConflict."""
        self._used = True
        self.last_written = (rec.type, rec.id)
        try:
            await self._write(rec, index, expected_version)
        except PyMongoError as error:
            if _is_conflict(error):
                raise VersionConflict(rec.type, rec.id, expected_version) from error
            raise

    async def _write(self, rec: StoredResource, index: Sequence[IndexValue], expected: int) -> None:
        # History first: its unique _id is the claim on version n, with or without a
        # transaction; inside one, a failure below aborts and takes the insert back.
        session, version = self._tx_session, _version_fields(rec)
        await self._history.insert_one(
            {**_one(rec.type, rec.id, rec.version), "seq": ObjectId(), **version},
            session=session)
        current = version | _index_fields(() if rec.deleted else index)
        if expected == 0:
            await self._resources.insert_one({**_one(rec.type, rec.id), "seq": ObjectId(),
                                              **current}, session=session)
            return
        changes = {k: v for k, v in current.items() if k not in ("type", "id")}  # shard key
        result = await self._resources.update_one(
            _one(rec.type, rec.id) | {"version": expected}, {"$set": changes}, session=session)
        if result.matched_count == 0:
            actual = await self.read(rec.type, rec.id)
            raise VersionConflict(rec.type, rec.id, expected, actual.version if actual else 0)

    async def lock(self, key: str) -> None:
        """Claim `key` until the transaction ends; see the module docstring for waiting."""
        deadline = time.monotonic() + self._lock_timeout
        delay = 0.002
        while True:
            try:
                await self._claim(key)
                self._used = True
                return
            except PyMongoError as error:
                if not _is_conflict(error):
                    raise
                if self._used or time.monotonic() > deadline:
                    raise TransactionConflict("lock", key, None) from error
            await self._restart()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _claim(self, key: str) -> None:
        await self._db["locks"].update_one(
            {"_id": key},
            {"$inc": {"claims": 1}, "$set": {"claimed_at": datetime.now(UTC)}},
            upsert=True, session=self._tx_session)

    async def _restart(self) -> None:
        """Abort (the server already has, after a conflict) and begin again, unused."""
        if self._tx_session.in_transaction:
            await self._tx_session.abort_transaction()
        await _begin(self._tx_session)


async def _begin(session: AsyncClientSession) -> None:
    # Snapshot reads: every read in the transaction sees one point in time. Majority
    # writes: a commit the client saw acknowledged survives a primary failover.
    await session.start_transaction(read_concern=ReadConcern("snapshot"),
                                    write_concern=WriteConcern("majority"))


async def _commit(session: AsyncClientSession, tx: MongoTx, attempts: int = 3) -> None:
    for attempt in range(attempts):
        try:
            await session.commit_transaction()
            return
        except PyMongoError as error:
            if error.has_error_label("UnknownTransactionCommitResult") and attempt < attempts - 1:
                continue  # retrying a commit is safe: it is idempotent
            if _is_conflict(error):
                raise TransactionConflict(*tx.last_written, None) from error
            raise


# -- the engine -----------------------------------------------------------------------


class MongoStorage(_Reader):
    """The `Storage` port on one MongoDB database (a replica set or sharded cluster)."""

    def __init__(self, database: AsyncDatabase[Any], *, owns_client: bool = False,
                 lock_timeout: float = 30.0) -> None:
        """`database`: an async database object (PyMongo's, or a test adapter with the
        same methods); `owns_client`: close its client on `close()`; `lock_timeout`:
        seconds `lock()` waits for another transaction holding the key."""
        super().__init__(database, None)
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
                "rs.initiate() once.")
        await self._resources.create_indexes(_RESOURCE_INDEXES)
        await self._history.create_indexes(_HISTORY_INDEXES)
        await self._db["locks"].create_indexes(_LOCK_INDEXES)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()

    async def vread(self, type: str, id: str, version: int) -> StoredResource | None:
        doc = await self._history.find_one(_one(type, id, version), _RECORD_FIELDS)
        return _record(doc) if doc else None

    async def history(self, query: HistoryQuery) -> Page:
        """Versions newest first (ties: higher version, then later written)."""
        if query.at is not None:
            return await self._history_at(query)
        match = _history_match(query)
        resources: list[StoredResource] = []
        if query.count > 0:
            cursor = (self._history.find(match, _RECORD_FIELDS).sort(list(_HISTORY_SORT.items()))
                      .skip(query.offset).limit(query.count))
            resources = [_record(doc) for doc in await cursor.to_list(None)]
        return Page(resources, await self._history.count_documents(match))

    async def _history_at(self, query: HistoryQuery) -> Page:
        stages = _history_at(query)
        counted = await (await self._history.aggregate(
            [*stages, {"$count": "n"}], allowDiskUse=True)).to_list(None)
        resources: list[StoredResource] = []
        if query.count > 0:
            page = [{"$sort": _HISTORY_SORT}, {"$skip": query.offset},
                    {"$limit": query.count}, {"$project": _RECORD_FIELDS}]
            cursor = await self._history.aggregate([*stages, *page], allowDiskUse=True)
            resources = [_record(doc) for doc in await cursor.to_list(None)]
        return Page(resources, counted[0]["n"] if counted else 0)

    async def iter_current(self, type: str) -> AsyncIterator[StoredResource]:
        """Live resources of `type` in insertion order, fetched in batches by the cursor."""
        cursor = (self._resources.find({"type": type, "deleted": False}, _RECORD_FIELDS)
                  .sort([("seq", ASCENDING)]).batch_size(ITER_BATCH))
        async for doc in cursor:
            yield _record(doc)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MongoTx]:
        """Commit on normal exit, abort on any exception (cancellation included)."""
        async with self._client.start_session() as session:
            await _begin(session)
            tx = MongoTx(self._db, session, self._lock_timeout)
            try:
                yield tx
            except BaseException:
                if session.in_transaction:
                    await session.abort_transaction()
                raise
            await _commit(session, tx)
