"""The storage port: what the FHIR service needs from a storage engine, and nothing more.

Engines (`sqlite`, `mongodb`) implement `Storage` and pass the one contract suite in
`tests/contract/`. They store each version's JSON bytes exactly as the service hands them
over and give them back unchanged: reads are served from these bytes.

Versioning rules the engines enforce (the service computes the numbers):
- `write(rec, index, expected_version=n)` succeeds only if the current version of
  (rec.type, rec.id) is `n` (0 when the resource never existed); otherwise it raises
  `VersionConflict`. Two writers that read the same version: exactly one wins.
- A deletion is a version whose `deleted` is true and `data` is empty: `read` returns it
  (the service answers 410), search no longer finds the resource, history keeps it.
- Everything written inside one `transaction()` becomes visible at once or not at all.

Coordination between server processes sharing one database (`serve --workers N`, or
several machines on one MongoDB):
- A lease (`acquire_lease`) names the one process that runs background duties: a record
  of its holder and expiry, taken when free or expired, renewed by its holder.
- A generation counter (`generation`, `bump_generation`) tells other processes that state
  they keep in memory (search parameters, terminology) changed in the database.
- Small named state (`load_state`, `save_state`, `state_keys`) keeps resumable jobs'
  checkpoints and queues.

Outbox queues (subscription notifications): `StorageTx.enqueue(queue, payload)` appends an
entry inside a write transaction, so it commits or rolls back with the resources written
there. A queue's sequence numbers are 1, 2, 3... without gaps, in commit order even when
several processes write (two transactions appending to one queue serialize on it), and
`queue_entries` reads them in that order; `queue_trim` forgets the delivered ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from fhir_server.search.conditions import SearchQuery
from fhir_server.search.values import IndexValue
from fhir_server.storage.blobs import BlobStore


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of one resource, as stored."""

    type: str
    id: str
    version: int
    last_updated: str  # FHIR instant in UTC, microseconds, e.g. 2026-11-22T05:10:00.123456Z
    deleted: bool
    data: bytes  # the resource JSON as served (meta.versionId/lastUpdated set); b"" if deleted
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = "PUT"


@dataclass(frozen=True, slots=True)
class Page:
    """A page of results; `total` is None when it was not asked for.

    `keys` (searches only) holds each resource's sort key, for `SearchQuery.page`: plain
    JSON values (str, int, float, None), so a client can carry them in a paging link."""

    resources: list[StoredResource]
    total: int | None
    keys: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """History at system (type None), type (id None) or instance level, newest first."""

    type: str | None = None
    id: str | None = None
    since: str | None = None  # only versions with last_updated >= since
    at: str | None = None  # only the version current at this instant, per resource
    count: int = 50
    offset: int = 0


class StorageReader(Protocol):
    async def read(self, type: str, id: str) -> StoredResource | None:
        """The current version (possibly a deletion), or None if it never existed."""

    async def search(self, query: SearchQuery) -> Page:
        """Current, not-deleted resources matching every clause of `query`."""


class StorageTx(StorageReader, Protocol):
    """A write transaction. Reads inside it see its own writes."""

    async def write(
        self, rec: StoredResource, index: Sequence[IndexValue], *, expected_version: int
    ) -> None:
        """Store a new version and replace the resource's index values; see module rules."""

    async def reindex(self, type: str, id: str, version: int, index: Sequence[IndexValue]) -> bool:
        """Replace the index values of version `version` of (type, id), creating no version.

        False (and nothing changed) when that version is no longer the current one.
        """

    async def lock(self, key: str) -> None:
        """Serialize transactions that claim the same key until they end (conditional create)."""

    async def enqueue(self, queue: str, payload: bytes) -> int:
        """Append `payload` to `queue` with this transaction; its sequence number (see above)."""


class Storage(StorageReader, Protocol):
    async def open(self) -> None:
        """Connect, create tables/collections and indexes."""

    async def close(self) -> None: ...

    async def vread(self, type: str, id: str, version: int) -> StoredResource | None: ...

    async def history(self, query: HistoryQuery) -> Page: ...

    def transaction(self) -> AbstractAsyncContextManager[StorageTx]:
        """All-or-nothing unit of work; commits on normal exit, rolls back on exception."""

    def iter_current(self, type: str) -> AsyncIterator[StoredResource]:
        """Every current, not-deleted resource of a type, streamed (for export)."""

    def iter_latest(self, type: str) -> AsyncIterator[StoredResource]:
        """The latest version of every resource of a type ever written, deletions included,
        streamed in a stable order (a resource keeps its place when it changes), so a scan
        while writes go on sees each resource once: at its version when the scan got there.
        A consistent export builds on this (`fhir_server.bulk.scan`)."""

    def blobs(self, name: str = "blobs") -> BlobStore:
        """Where this engine keeps byte content (see `fhir_server.storage.blobs`): Binary
        content in "blobs"; other names are separate stores (bulk export files)."""

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew lease `name` for `holder` until `seconds` from now (wall clock).

        True when `holder` now holds it: it was free, expired, or already `holder`'s.
        False (and nothing changed) while another holder's lease has not expired."""

    async def release_lease(self, name: str, holder: str) -> None:
        """Give up lease `name` if `holder` holds it, so another process takes it at once."""

    async def generation(self, name: str) -> int:
        """The counter `name` (0 before its first bump): cheap, read on every check."""

    async def bump_generation(self, name: str) -> None:
        """Add one to counter `name`, committed when this returns."""

    async def load_state(self, key: str) -> bytes | None:
        """The value saved under `key`, or None."""

    async def save_state(self, key: str, value: bytes | None) -> None:
        """Save (None: remove) the value under `key`, committed when this returns."""

    async def state_keys(self, prefix: str) -> list[str]:
        """The keys of saved state that start with `prefix`, sorted (e.g. queued jobs)."""

    async def queue_heads(self, prefix: str) -> dict[str, int]:
        """The last sequence number of every queue whose name starts with `prefix`."""

    async def queue_entries(
        self, queue: str, after: int, *, until: int | None = None, limit: int = 100
    ) -> list[tuple[int, bytes]]:
        """Committed entries of `queue` numbered after `after` (up to `until`), in order."""

    async def queue_trim(self, queue: str, upto: int) -> None:
        """Forget the entries of `queue` numbered up to `upto` (its numbering goes on)."""

    async def queue_drop(self, queue: str) -> None:
        """Forget `queue` entirely: its entries and its numbering."""
