"""The blob store: large byte content (Binary) kept outside the JSON of the resources.

A Binary's bytes go here, named by their SHA-256, and the stored Binary keeps a reference
(hash and size). Blobs are written whole before the transaction that references them
commits, and never changed afterwards: the same bytes get the same name, so a second upload
of a file costs no space, and every version of a Binary keeps its blob (deleting a Binary
deletes no blob; `fhir-server blobs gc` removes those no stored version names).

- `FileBlobStore`: files beside the SQLite database, `<database>.blobs/<sha256>`. Each
  upload goes to a temporary file in that directory, is fsynced, then renamed atomically,
  and the directory fsynced: a crash leaves either the whole blob or a stray temporary file.
- The MongoDB engine keeps blobs in GridFS (`fhir_server.storage.mongodb.blobs`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from io import BufferedWriter
from pathlib import Path
from typing import Protocol

from fhir_server.errors import PayloadTooLarge

CHUNK = 1024 * 1024  # bytes read or written per step
_NAME = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class BlobRef:
    """What a stored Binary keeps of its content: the SHA-256 (its name), size and SHA-1."""

    sha256: str  # hex
    size: int
    sha1: str  # hex (a DocumentReference's attachment.hash is its base64)


class BlobStore(Protocol):
    async def put(self, chunks: AsyncIterable[bytes], *, limit: int | None = None) -> BlobRef:
        """Store the bytes `chunks` yields (durably, before returning); 413 beyond `limit`."""

    def read(self, sha256: str) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks (FileNotFoundError when there is no such blob)."""

    async def exists(self, sha256: str) -> bool: ...

    async def names(self, older_than: float = 0.0) -> list[str]:
        """The SHA-256 of every blob held, stored at least `older_than` seconds ago."""

    async def remove(self, sha256: str) -> None: ...


class Digests:
    """SHA-256, SHA-1 and size of a stream, updated chunk by chunk, with an optional limit."""

    def __init__(self, limit: int | None) -> None:
        self.sha256 = hashlib.sha256()
        self.sha1 = hashlib.sha1(usedforsecurity=False)
        self.size = 0
        self.limit = limit

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            raise PayloadTooLarge(f"The content is larger than the limit of {self.limit} bytes")
        self.sha256.update(chunk)
        self.sha1.update(chunk)

    def ref(self) -> BlobRef:
        return BlobRef(self.sha256.hexdigest(), self.size, self.sha1.hexdigest())


def valid_name(sha256: str) -> str:
    """`sha256` when it is 64 lower-case hex digits (so never a path), else ValueError."""
    if not _NAME.match(sha256):
        raise ValueError(f"not a blob name: {sha256!r}")
    return sha256


class FileBlobStore:
    """Blobs as files `<directory>/<sha256>`; see the module docstring."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def beside(cls, database: str) -> FileBlobStore:
        """The store of a SQLite database file: `<database>.blobs/`."""
        return cls(f"{database}.blobs")

    async def put(self, chunks: AsyncIterable[bytes], *, limit: int | None = None) -> BlobRef:
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".upload-")
        digests = Digests(limit)
        try:
            with os.fdopen(fd, "wb") as out:
                pending: list[bytes] = []
                pending_size = 0
                async for chunk in chunks:
                    digests.update(chunk)
                    pending.append(chunk)
                    pending_size += len(chunk)
                    if pending_size >= CHUNK:  # one thread hop per MB, not per packet
                        await asyncio.to_thread(out.writelines, pending)
                        pending, pending_size = [], 0
                await asyncio.to_thread(_finish, out, pending)
            ref = digests.ref()
            await asyncio.to_thread(self._install, temp, ref.sha256)
            return ref
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def _install(self, temp: str, sha256: str) -> None:
        os.replace(temp, self.directory / sha256)  # same bytes, same name: replacing is harmless
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    async def read(self, sha256: str) -> AsyncIterator[bytes]:
        path = self.directory / valid_name(sha256)
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk
        finally:
            handle.close()

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread((self.directory / valid_name(sha256)).is_file)

    async def names(self, older_than: float = 0.0) -> list[str]:
        def scan() -> list[str]:
            if not self.directory.is_dir():
                return []
            before = time.time() - older_than
            return sorted(
                p.name
                for p in self.directory.iterdir()
                if _NAME.match(p.name) and p.stat().st_mtime <= before
            )

        return await asyncio.to_thread(scan)

    async def remove(self, sha256: str) -> None:
        await asyncio.to_thread((self.directory / valid_name(sha256)).unlink, missing_ok=True)


def _finish(out: BufferedWriter, pending: list[bytes]) -> None:
    out.writelines(pending)
    out.flush()
    os.fsync(out.fileno())
