"""Transactions: one session transaction per `MongoTx`, with conditional writes and locks
(see the package docstring for the concurrency rules)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import ReadPreference
from pymongo.errors import DocumentTooLarge, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from fhir_server.errors import TooLargeForStorage, VersionConflict
from fhir_server.search.conditions import SearchQuery
from fhir_server.search.values import IndexValue
from fhir_server.storage.base import Page, StoredResource
from fhir_server.storage.mongodb import queues
from fhir_server.storage.mongodb.chunks import split
from fhir_server.storage.mongodb.documents import index_fields, one, version_fields
from fhir_server.storage.mongodb.errors import (
    TransactionConflict,
    classify,
    commit_unknown,
    is_conflict,
)
from fhir_server.storage.mongodb.reads import Reader

if TYPE_CHECKING:
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.database import AsyncDatabase


class MongoTx(Reader):
    """One session transaction; reads and writes pass the session (reads see own writes)."""

    def __init__(
        self,
        db: AsyncDatabase[Any],
        session: AsyncClientSession,
        lock_timeout: float,
        options: TxOptions | None = None,
    ) -> None:
        super().__init__(db, session)
        self._tx_session = session
        self._lock_timeout = lock_timeout
        self.options = options or TxOptions()
        self._used = False  # whether any operation ran: a restart would then lose it
        self.started = time.monotonic()
        self.last_written = ("transaction", "")

    def failure(self, error: PyMongoError) -> Exception:
        """What the service sees of a server error in this transaction (see `errors`)."""
        elapsed = time.monotonic() - self.started
        return classify(error, self.last_written, elapsed, self.options.lifetime)

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
            if is_conflict(error):
                raise VersionConflict(rec.type, rec.id, expected_version) from error
            raise
        except DocumentTooLarge as error:  # not a PyMongoError: refused before sending
            raise TooLargeForStorage(
                f"{rec.type}/{rec.id} has {len(index)} search values: more than one database "
                "document (16 MiB) holds; nothing was written"
            ) from error

    async def _write(self, rec: StoredResource, index: Sequence[IndexValue], expected: int) -> None:
        # History first: its unique _id is the claim on version n, with or without a
        # transaction; inside one, a failure below aborts and takes the insert back.
        session, version = self._tx_session, version_fields(rec)
        version["data"], pieces = split(rec)
        version["chunks"] = len(pieces)
        await self._history.insert_one(
            {**one(rec.type, rec.id, rec.version), "seq": ObjectId(), **version}, session=session
        )
        for piece in pieces:
            await self._db["chunks"].insert_one(piece, session=session)
        current = version | index_fields(() if rec.deleted else index)
        if expected == 0:
            await self._resources.insert_one(
                {**one(rec.type, rec.id), "seq": ObjectId(), **current}, session=session
            )
            return
        changes = {k: v for k, v in current.items() if k not in ("type", "id")}  # shard key
        result = await self._resources.update_one(
            one(rec.type, rec.id) | {"version": expected}, {"$set": changes}, session=session
        )
        if result.matched_count == 0:
            actual = await self.read(rec.type, rec.id)
            raise VersionConflict(rec.type, rec.id, expected, actual.version if actual else 0)

    async def reindex(self, type: str, id: str, version: int, index: Sequence[IndexValue]) -> bool:
        """Replace the index arrays of version `version` if it is still current."""
        self._used = True
        result = await self._resources.update_one(
            one(type, id) | {"version": version, "deleted": False},
            {"$set": index_fields(index)},
            session=self._tx_session,
        )
        return result.matched_count == 1

    async def enqueue(self, queue: str, payload: bytes) -> int:
        """Append to an outbox queue in this transaction (see `queues`)."""
        self._used = True
        self.last_written = ("queue", queue)
        return await queues.enqueue(self._db, self._tx_session, queue, payload)

    async def lock(self, key: str) -> None:
        """Claim `key` until the transaction ends; see the package docstring for waiting."""
        deadline = time.monotonic() + self._lock_timeout
        delay = 0.002
        while True:
            try:
                await self._claim(key)
                self._used = True
                return
            except PyMongoError as error:
                if not is_conflict(error):
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
            upsert=True,
            session=self._tx_session,
        )

    async def _restart(self) -> None:
        """Abort (the server already has, after a conflict) and begin again, unused."""
        if self._tx_session.in_transaction:
            await self._tx_session.abort_transaction()
        await begin(self._tx_session, self.options)
        self.started = time.monotonic()


@dataclass(frozen=True, slots=True)
class TxOptions:
    """`max_commit_ms`: how long a commit may wait for the majority (maxCommitTimeMS);
    `lifetime`: the server's transactionLifetimeLimitSeconds, to tell an expired transaction
    from a transient failure; `commit_attempts`: tries of a commit whose result is unknown."""

    max_commit_ms: int = 30_000
    lifetime: float = 60.0
    commit_attempts: int = 3


async def begin(session: AsyncClientSession, options: TxOptions | None = None) -> None:
    # Snapshot reads: every read in the transaction sees one point in time. Majority
    # writes: a commit the client saw acknowledged survives a primary failover. Primary:
    # whatever the connection string says for plain reads, a transaction reads there.
    options = options or TxOptions()
    await session.start_transaction(
        read_concern=ReadConcern("snapshot"),
        write_concern=WriteConcern("majority"),
        read_preference=ReadPreference.PRIMARY,
        max_commit_time_ms=options.max_commit_ms,
    )


async def commit(session: AsyncClientSession, tx: MongoTx) -> None:
    """Commit; on UnknownTransactionCommitResult retry the commit alone (it is idempotent),
    never the transaction (its writes could then happen twice): past the attempts, a 503
    that says the outcome is unknown."""
    attempts = tx.options.commit_attempts
    for attempt in range(attempts):
        try:
            await session.commit_transaction()
            return
        except PyMongoError as error:
            if not error.has_error_label("UnknownTransactionCommitResult"):
                raise tx.failure(error) from error
            if attempt == attempts - 1:
                raise commit_unknown() from error
            await asyncio.sleep(0.05 * 2**attempt)
