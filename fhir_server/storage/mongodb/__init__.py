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
    chunks     _id "Type/id/version/k": the body of a version over 4 MiB, in pieces (its
               resources/history documents then hold `data: b""`, `chunks: n`); see
               `chunks`.
    leases, generations, saved_state  coordination between server processes (the
               leader lease, change counters, job checkpoints); see `coordination`.

Indexes (`open()`, idempotent) are compound multikey indexes that lead with `type` and
the parameter name, e.g. (type, tok.p, tok.c, tok.s), so every positive condition is an
index range; see `indexes.RESOURCE_INDEXES`.

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
- Server errors follow the driver's rules (`errors`): a TransientTransactionError becomes
  `TransientStorageError` (the service runs the unit again with back-off, then 503); an
  UnknownTransactionCommitResult retries the commit alone, then 503; a transaction too
  large or too long is a 413 that says to split it; `DocumentTooLarge` a 413.
- Transactions read from the primary and commit within `TxOptions.max_commit_ms`.

Scale-out: shard `resources`, `history` and `chunks` on {type: 1, id: "hashed"} and
`locks` on {_id: "hashed"}. Every version of a resource then lives on one shard of
`history`, so the unique `_id`s that decide version races are enforced there; point reads
and writes name type and id (`documents.one`) so they are routed to one shard per
collection; UUID ids spread writes evenly. The collections are placed independently, so
a write usually spans shards: a distributed transaction (two-phase commit). Searches fan
out to the shards that hold the type.

Modules: `documents` (document shape, index arrays from index values), `chunks` (large
bodies), `indexes` (index creation), `query` (search conditions to filters and sort),
`history` (history filters and aggregations), `errors`, `reads` (reads shared by the
engine and its transactions), `transaction` (`MongoTx`: writes, locks, begin and
commit), `coordination` (leases, counters, saved state), `engine` (`MongoStorage`).
"""

from __future__ import annotations

from fhir_server.storage.mongodb.documents import Filter
from fhir_server.storage.mongodb.engine import ITER_BATCH, MongoStorage
from fhir_server.storage.mongodb.errors import TransactionConflict, TransactionsUnavailable
from fhir_server.storage.mongodb.indexes import LOCK_TTL_SECONDS
from fhir_server.storage.mongodb.query import search_filter, search_sort
from fhir_server.storage.mongodb.transaction import MongoTx

__all__ = [
    "ITER_BATCH",
    "LOCK_TTL_SECONDS",
    "Filter",
    "MongoStorage",
    "MongoTx",
    "TransactionConflict",
    "TransactionsUnavailable",
    "search_filter",
    "search_sort",
]
