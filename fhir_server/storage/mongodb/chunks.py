"""Large bodies: a version's JSON bytes over `CHUNK_BYTES` are stored in `chunks` documents.

A BSON document holds at most 16 MiB, and PyMongo refuses a larger one with
`DocumentTooLarge` before sending it. A version whose body is larger than `CHUNK_BYTES`
(e.g. a LOINC or SNOMED CT CodeSystem, a large Bundle document) keeps `data` empty and
`chunks: n`; its bytes are in `chunks` documents `_id "Type/id/version/k"` (k = 0..n-1,
with `type` and `id` so a collection sharded on them keeps a resource's pieces together),
written in the same transaction as the version and shared by its `resources` and
`history` documents (a version never changes, so neither do its chunks). Readers put the
bytes back together (`Loader`); the storage port sees the same `StoredResource` either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fhir_server.storage.base import StoredResource
from fhir_server.storage.mongodb.documents import record

if TYPE_CHECKING:
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.database import AsyncDatabase

CHUNK_BYTES = 4 * 1024 * 1024


def split(rec: StoredResource) -> tuple[bytes, list[dict[str, Any]]]:
    """The bytes kept in the version's own documents, and the chunk documents (if any)."""
    if len(rec.data) <= CHUNK_BYTES:
        return rec.data, []
    pieces = [rec.data[i : i + CHUNK_BYTES] for i in range(0, len(rec.data), CHUNK_BYTES)]
    base = f"{rec.type}/{rec.id}/{rec.version}"
    return b"", [
        {"_id": f"{base}/{k}", "type": rec.type, "id": rec.id, "data": piece}
        for k, piece in enumerate(pieces)
    ]


class Loader:
    """Turns fetched documents into `StoredResource`s, reading the chunks of large ones."""

    def __init__(self, db: AsyncDatabase[Any], session: AsyncClientSession | None) -> None:
        self._chunks = db["chunks"]
        self._session = session

    async def one(self, doc: dict[str, Any]) -> StoredResource:
        count = doc.get("chunks") or 0
        if not count:
            return record(doc)
        base = f"{doc['type']}/{doc['id']}/{doc['version']}"
        keys = [f"{base}/{k}" for k in range(count)]
        found = {
            piece["_id"]: bytes(piece["data"])
            async for piece in self._chunks.find(
                {"_id": {"$in": keys}, "type": doc["type"], "id": doc["id"]},
                session=self._session,
            )
        }
        if len(found) != count:
            raise RuntimeError(f"{base}: {count - len(found)} of its {count} chunks are missing")
        return record(doc, b"".join(found[k] for k in keys))

    async def all(self, docs: Iterable[dict[str, Any]]) -> list[StoredResource]:
        return [await self.one(doc) for doc in docs]
