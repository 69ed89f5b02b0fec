"""Binary content on MongoDB, in GridFS's layout (https://www.mongodb.com/docs/manual/core/gridfs/).

Collections `blobs.files` and `blobs.chunks` as the GridFS specification lays them out (a
files document per blob: `_id`, `length`, `chunkSize`, `uploadDate`, `filename` = the
SHA-256, `metadata.sha1`; chunks `{files_id, n, data}` with a unique index on
`(files_id, n)`), so `mongofiles --prefix blobs` and every driver's GridFS reader can read
them. The documents are written with the collection API the engine already uses rather than
PyMongo's `AsyncGridFSBucket`, which accepts only a real `AsyncDatabase` (so the tests'
stand-in could not run it). Chunks go first, outside any transaction (a blob may be far
larger than a transaction); the files document last, so a blob is visible only whole. An
upload that fails removes its chunks; one cut short by a crash leaves chunks that no files
document names (never read; not cleared automatically yet).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel

from fhir_server.storage.blobs import BlobRef, Digests

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

CHUNK_SIZE = 255 * 1024  # GridFS's default chunk size
PREFIX = "blobs"
BLOB_INDEXES = {
    "files": [IndexModel([("filename", ASCENDING), ("uploadDate", ASCENDING)])],
    "chunks": [IndexModel([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)],
}


class GridBlobStore:
    """The blob store (`fhir_server.storage.blobs.BlobStore`) of one MongoDB database."""

    def __init__(self, database: AsyncDatabase[Any], prefix: str = PREFIX) -> None:
        self._files = database[f"{prefix}.files"]
        self._chunks = database[f"{prefix}.chunks"]

    async def create_indexes(self) -> None:
        await self._files.create_indexes(BLOB_INDEXES["files"])
        await self._chunks.create_indexes(BLOB_INDEXES["chunks"])

    async def put(self, chunks: AsyncIterable[bytes], *, limit: int | None = None) -> BlobRef:
        files_id = ObjectId()
        digests = Digests(limit)
        buffer = bytearray()
        n = 0
        try:
            async for chunk in chunks:
                digests.update(chunk)
                buffer += chunk
                while len(buffer) >= CHUNK_SIZE:
                    await self._chunk(files_id, n, bytes(buffer[:CHUNK_SIZE]))
                    del buffer[:CHUNK_SIZE]
                    n += 1
            if buffer:
                await self._chunk(files_id, n, bytes(buffer))
            ref = digests.ref()
            if await self.exists(ref.sha256):  # the same bytes are held already
                await self._drop_chunks(files_id)
                return ref
            await self._files.insert_one(_files_document(files_id, ref))
            return ref
        except BaseException:
            await self._drop_chunks(files_id)
            raise

    async def _chunk(self, files_id: ObjectId, n: int, data: bytes) -> None:
        await self._chunks.insert_one({"files_id": files_id, "n": n, "data": data})

    async def _drop_chunks(self, files_id: ObjectId) -> None:
        await self._chunks.delete_many({"files_id": files_id})

    async def read(self, sha256: str) -> AsyncIterator[bytes]:
        found = await self._files.find_one({"filename": sha256}, {"_id": 1, "length": 1})
        if found is None:
            raise FileNotFoundError(sha256)
        expected = 0
        cursor = self._chunks.find({"files_id": found["_id"]}, {"n": 1, "data": 1})
        async for chunk in cursor.sort([("n", ASCENDING)]):
            if chunk["n"] != expected:
                raise FileNotFoundError(f"{sha256}: chunk {expected} is missing")
            expected += 1
            yield bytes(chunk["data"])

    async def exists(self, sha256: str) -> bool:
        return await self._files.find_one({"filename": sha256}, {"_id": 1}) is not None

    async def names(self, older_than: float = 0.0) -> list[str]:
        before = datetime.now(UTC) - timedelta(seconds=older_than)
        cursor = self._files.find({"uploadDate": {"$lte": before}}, {"filename": 1})
        return sorted({doc["filename"] async for doc in cursor})

    async def remove(self, sha256: str) -> None:
        async for doc in self._files.find({"filename": sha256}, {"_id": 1}):
            await self._files.delete_one({"_id": doc["_id"]})
            await self._drop_chunks(doc["_id"])


def _files_document(files_id: ObjectId, ref: BlobRef) -> dict[str, Any]:
    return {
        "_id": files_id,
        "length": ref.size,
        "chunkSize": CHUNK_SIZE,
        "uploadDate": datetime.now(UTC),
        "filename": ref.sha256,
        "metadata": {"sha1": ref.sha1},
    }
