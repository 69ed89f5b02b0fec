"""`EncryptedStorage`: any storage engine, with encryption at rest in front of it.

Everything the service writes is sealed before it reaches the engine (`FieldCipher.seal`
on the JSON, `BlindIndex.index` on the index values, `EncryptedBlobStore` on Binary
content), inside the caller's code path and before the engine's transaction sees a byte:
a failure to encrypt aborts the write, so no record is ever stored half encrypted. Every
way back (read, vread, search, history, iter_current, reads inside a transaction) opens
what the engine returns. Search queries on encrypted parameters are turned into blind
index terms (`BlindIndex.query`). The core and both engines stay unaware of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace

from fhir_server.search.conditions import SearchQuery
from fhir_server.search.values import IndexValue
from fhir_server.storage.base import HistoryQuery, Page, Storage, StorageTx, StoredResource
from fhir_server.storage.blobs import BlobStore
from fhir_server.storage.encryption.blind import BlindIndex
from fhir_server.storage.encryption.blobs import EncryptedBlobStore
from fhir_server.storage.encryption.fields import FieldCipher, UnreadableRecord
from fhir_server.storage.encryption.keys import MasterKeys, reload_data_keys


class _Codec:
    """What the storage and its transactions share: the ciphers and the key reload."""

    def __init__(self, inner: Storage, master: MasterKeys, fields: FieldCipher, blind: BlindIndex):
        self.inner = inner
        self.master = master
        self.fields = fields
        self.blind = blind

    def seal(self, rec: StoredResource) -> StoredResource:
        if rec.deleted or not rec.data:
            return rec
        return replace(rec, data=self.fields.seal(rec.type, rec.id, rec.data))

    async def open(self, rec: StoredResource | None) -> StoredResource | None:
        if rec is None or not FieldCipher.is_sealed(rec.data):
            return rec
        try:
            data = self.fields.open(rec.type, rec.id, rec.data)
        except UnreadableRecord:
            if self.fields.keys.cipher(self.fields.sealed_key(rec.data)) is not None:
                raise
            await self.reload()  # a data key another process added after a rotation
            data = self.fields.open(rec.type, rec.id, rec.data)
        return replace(rec, data=data)

    async def open_all(self, recs: Sequence[StoredResource]) -> list[StoredResource]:
        return [r for r in [await self.open(rec) for rec in recs] if r is not None]

    async def open_page(self, page: Page) -> Page:
        return replace(page, resources=await self.open_all(page.resources))

    async def reload(self) -> None:
        keys = await reload_data_keys(self.inner, self.master)
        self.fields.keys.keys.update(keys.keys)  # the active key stays: others may still use it
        self.fields.keys.aead.clear()


class EncryptedTx:
    """A write transaction of the inner engine, sealing what it writes."""

    def __init__(self, tx: StorageTx, codec: _Codec) -> None:
        self._tx = tx
        self._codec = codec

    async def read(self, type: str, id: str) -> StoredResource | None:
        return await self._codec.open(await self._tx.read(type, id))

    async def search(self, query: SearchQuery) -> Page:
        page = await self._tx.search(self._codec.blind.query(query))
        return await self._codec.open_page(page)

    async def write(
        self, rec: StoredResource, index: Sequence[IndexValue], *, expected_version: int
    ) -> None:
        sealed = self._codec.seal(rec)
        terms = self._codec.blind.index(rec.type, index)
        await self._tx.write(sealed, terms, expected_version=expected_version)

    async def reindex(self, type: str, id: str, version: int, index: Sequence[IndexValue]) -> bool:
        return await self._tx.reindex(type, id, version, self._codec.blind.index(type, index))

    async def enqueue(self, queue: str, payload: bytes) -> int:
        """Outbox entries name versions (type, id, number), no content: kept as they are."""
        return await self._tx.enqueue(queue, payload)

    async def lock(self, key: str) -> None:
        # keys name what they claim (an identifier's value): engines may store them
        await self._tx.lock("blind:" + self._codec.blind.term("lock", "", key))


class EncryptedStorage:
    """`inner` with encryption at rest; see the module docstring."""

    def __init__(
        self, inner: Storage, master: MasterKeys, fields: FieldCipher, blind: BlindIndex
    ) -> None:
        self.inner = inner
        self._codec = _Codec(inner, master, fields, blind)
        self._keys = fields.keys
        self._blobs: dict[str, BlobStore] = {}

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def read(self, type: str, id: str) -> StoredResource | None:
        return await self._codec.open(await self.inner.read(type, id))

    async def vread(self, type: str, id: str, version: int) -> StoredResource | None:
        return await self._codec.open(await self.inner.vread(type, id, version))

    async def search(self, query: SearchQuery) -> Page:
        page = await self.inner.search(self._codec.blind.query(query))
        return await self._codec.open_page(page)

    async def history(self, query: HistoryQuery) -> Page:
        return await self._codec.open_page(await self.inner.history(query))

    def transaction(self) -> AbstractAsyncContextManager[StorageTx]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[StorageTx]:
        async with self.inner.transaction() as tx:
            yield EncryptedTx(tx, self._codec)

    async def iter_current(self, type: str) -> AsyncIterator[StoredResource]:
        async for rec in self.inner.iter_current(type):
            opened = await self._codec.open(rec)
            if opened is not None:
                yield opened

    async def iter_latest(self, type: str) -> AsyncIterator[StoredResource]:
        async for rec in self.inner.iter_latest(type):
            opened = await self._codec.open(rec)
            if opened is not None:
                yield opened

    def blobs(self, name: str = "blobs") -> BlobStore:
        """Every byte store sealed alike: Binary content and the bulk export files."""
        store = self._blobs.get(name)
        if store is None:
            store = EncryptedBlobStore(self.inner.blobs(name), self._keys, self._codec.reload)
            self._blobs[name] = store
        return store

    async def state_keys(self, prefix: str) -> list[str]:
        return await self.inner.state_keys(prefix)

    async def queue_heads(self, prefix: str) -> dict[str, int]:
        return await self.inner.queue_heads(prefix)

    async def queue_entries(
        self, queue: str, after: int, *, until: int | None = None, limit: int = 100
    ) -> list[tuple[int, bytes]]:
        return await self.inner.queue_entries(queue, after, until=until, limit=limit)

    async def queue_trim(self, queue: str, upto: int) -> None:
        await self.inner.queue_trim(queue, upto)

    async def queue_drop(self, queue: str) -> None:
        await self.inner.queue_drop(queue)

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        return await self.inner.acquire_lease(name, holder, seconds)

    async def release_lease(self, name: str, holder: str) -> None:
        await self.inner.release_lease(name, holder)

    async def generation(self, name: str) -> int:
        return await self.inner.generation(name)

    async def bump_generation(self, name: str) -> None:
        await self.inner.bump_generation(name)

    async def load_state(self, key: str) -> bytes | None:
        return await self.inner.load_state(key)

    async def save_state(self, key: str, value: bytes | None) -> None:
        await self.inner.save_state(key, value)


def unwrap(storage: Storage) -> Storage:
    """The engine under any encryption wrapper, for what only the engine offers (its upkeep
    duty, its database handle); the wrapper passes nothing else through, so no engine
    method can read or write around the encryption by accident."""
    return storage.inner if isinstance(storage, EncryptedStorage) else storage
