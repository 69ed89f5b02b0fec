"""Binary content encrypted before it reaches the engine's blob store.

A blob is stored as a header (`FSB1`, the data key id) and frames of up to `FRAME` plain
bytes, each `length (4 bytes) | nonce | AES-256-GCM ciphertext` with the frame's number and
whether it is the last as associated data, so frames cannot be reordered, dropped or cut
off unnoticed. The inner store names the blob by the SHA-256 of these encrypted bytes; the
`BlobRef` the Binary keeps has that name and the plain size and SHA-1 (what a client sees).
Equal uploads get different names (fresh nonces): deduplication is lost with encryption.
"""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fhir_server.storage.blobs import CHUNK, BlobRef, BlobStore, Digests
from fhir_server.storage.encryption.keys import NONCE_BYTES, DataKeys

MAGIC = b"FSB1"
FRAME = CHUNK


class BlobUnreadable(Exception):
    """An encrypted blob that does not verify (changed, cut off or an unknown key)."""


class EncryptedBlobStore:
    """A `BlobStore` that encrypts into `inner` with the active data key."""

    def __init__(
        self,
        inner: BlobStore,
        keys: DataKeys,
        reload: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`reload`: reads the keyring again (a data key another process added)."""
        self.inner = inner
        self.keys = keys
        self._reload = reload

    async def put(self, chunks: AsyncIterable[bytes], *, limit: int | None = None) -> BlobRef:
        digests = Digests(limit)
        stored = await self.inner.put(self._sealed(chunks, digests))
        plain = digests.ref()
        return BlobRef(stored.sha256, plain.size, plain.sha1)

    async def _sealed(self, chunks: AsyncIterable[bytes], digests: Digests) -> AsyncIterator[bytes]:
        kid = self.keys.active
        cipher = self.keys.cipher(kid)
        assert cipher is not None
        name = kid.encode()
        yield MAGIC + struct.pack(">B", len(name)) + name
        buffer = bytearray()
        number = 0
        async for chunk in chunks:
            digests.update(chunk)
            buffer += chunk
            while len(buffer) > FRAME:  # keep one frame back: the last one is marked
                frame = bytes(buffer[:FRAME])
                del buffer[:FRAME]
                yield _frame(cipher, number, False, frame)
                number += 1
        yield _frame(cipher, number, True, bytes(buffer))

    async def read(self, sha256: str) -> AsyncIterator[bytes]:
        stream = _Reader(self.inner.read(sha256))
        head = await stream.take(5)
        if head[:4] != MAGIC:
            raise BlobUnreadable(f"blob {sha256} is not encrypted content")
        kid = (await stream.take(head[4])).decode()
        cipher = self.keys.cipher(kid)
        if cipher is None and self._reload is not None:
            await self._reload()
            cipher = self.keys.cipher(kid)
        if cipher is None:
            raise BlobUnreadable(f"blob {sha256} is encrypted with unknown data key '{kid}'")
        number = 0
        while True:
            (length,) = struct.unpack(">I", await stream.take(4))
            last = not await stream.more(length + NONCE_BYTES)
            body = await stream.take(length + NONCE_BYTES)
            try:
                plain = cipher.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], _aad(number, last))
            except Exception:
                raise BlobUnreadable(f"blob {sha256} does not verify") from None
            yield plain
            if last:
                return
            number += 1

    async def exists(self, sha256: str) -> bool:
        return await self.inner.exists(sha256)

    async def names(self, older_than: float = 0.0) -> list[str]:
        return await self.inner.names(older_than)

    async def remove(self, sha256: str) -> None:
        await self.inner.remove(sha256)


def _aad(number: int, last: bool) -> bytes:
    return struct.pack(">QB", number, 1 if last else 0)


def _frame(cipher: AESGCM, number: int, last: bool, plain: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    sealed = cipher.encrypt(nonce, plain, _aad(number, last))
    return struct.pack(">I", len(sealed)) + nonce + sealed


class _Reader:
    """Exact-size reads over a stream of chunks."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._done = False

    async def _fill(self, n: int) -> None:
        while len(self._buffer) < n and not self._done:
            try:
                self._buffer += await anext(self._chunks)
            except StopAsyncIteration:
                self._done = True

    async def take(self, n: int) -> bytes:
        await self._fill(n)
        if len(self._buffer) < n:
            raise BlobUnreadable("an encrypted blob ends early")
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    async def more(self, n: int) -> bool:
        """Whether bytes follow the next `n`."""
        await self._fill(n + 1)
        return len(self._buffer) > n
