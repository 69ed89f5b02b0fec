"""Encryption at rest: field-level encryption of chosen elements, for every storage engine.

Design note.
- On when a master key is configured (`FHIR_ENCRYPTION_KEY_FILE` or `FHIR_ENCRYPTION_KEY`);
  the assembly then wraps the engine in `EncryptedStorage` (`wrapper.py`). Off, nothing
  of this package runs on the request path.
- Envelope encryption, one set of data keys per database (`keys.py`): AES-256 data keys
  encrypt the elements; they are stored in the database wrapped (AES-256-GCM) by the
  master key, with that key's id. Per database rather than per resource because the
  storage port stores each version once and never rewrites it: rotating the master key
  then re-wraps a few data keys in one step (`rotate`), and every version, however old,
  stays readable under the data key that sealed it. Rotation also starts a new data key
  for new writes.
- What is encrypted (`fields.py`): the elements `ElementPaths` lists, sealed in place in
  the stored JSON with AES-256-GCM, and Binary content in the blob store (`blobs.py`).
- Search (`blind.py`): the index values of parameters over encrypted elements become
  keyed HMAC terms; search values for them are turned into the same terms.
"""

from __future__ import annotations

from fhir_server.search.registry import SearchRegistry
from fhir_server.storage.base import Storage
from fhir_server.storage.encryption.blind import BlindIndex
from fhir_server.storage.encryption.fields import ElementPaths, FieldCipher
from fhir_server.storage.encryption.keys import (
    EncryptionKeyError,
    KeyMismatch,
    MasterKeys,
    is_encrypted,
    open_data_keys,
    rotate,
)
from fhir_server.storage.encryption.wrapper import EncryptedStorage, unwrap

__all__ = [
    "ElementPaths",
    "EncryptedStorage",
    "EncryptionKeyError",
    "KeyMismatch",
    "MasterKeys",
    "encrypted",
    "is_encrypted",
    "open_data_keys",
    "rotate",
    "unwrap",
]


async def encrypted(
    storage: Storage, master: MasterKeys, paths: ElementPaths, registry: SearchRegistry
) -> EncryptedStorage:
    """`storage` (opened) behind encryption: its data keys unwrapped (created on first
    use) with `master`; raises `KeyMismatch` for a wrong master key."""
    keys = await open_data_keys(storage, master)
    return EncryptedStorage(
        storage, master, FieldCipher(paths, keys), BlindIndex(registry, paths, keys.index)
    )
