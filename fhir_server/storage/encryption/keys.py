"""The keys of encryption at rest: master keys outside the database, data keys inside it.

- Master keys (`MasterKeys`) come from the key file (`FHIR_ENCRYPTION_KEY_FILE`, JSON
  `{"active": "<id>", "keys": {"<id>": "<base64 of 32 bytes>", ...}}`) or one key in
  `FHIR_ENCRYPTION_KEY` (base64 of 32 bytes; its id is derived from it). They only wrap
  keys; a KMS can take their place behind `MasterKeys.wrap` / `unwrap` later.
- Data keys (`DataKeys`) encrypt the resources: AES-256 keys kept in the database's state
  (`KEYRING`), each wrapped (AES-256-GCM) by the active master key and labelled with that
  key's id. One data key is active for new writes; older ones stay for reading older
  versions. A separate key (`index`) makes the blind index terms (HMAC-SHA-256).
- The keyring unwrapping is the key check: with a master key that did not wrap it, GCM's
  tag does not verify and `KeyMismatch` says so before anything is served or written.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYRING = "encryption:keyring"  # the storage state key of the wrapped data keys
KEY_BYTES = 32
NONCE_BYTES = 12


class EncryptionKeyError(Exception):
    """A key cannot be loaded or does not fit the database (the message says which)."""


class KeyMismatch(EncryptionKeyError):
    """The configured master keys cannot unwrap this database's data keys."""


class StateStore(Protocol):
    async def load_state(self, key: str) -> bytes | None: ...

    async def save_state(self, key: str, value: bytes | None) -> None: ...

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool: ...

    async def release_lease(self, name: str, holder: str) -> None: ...


def key_id(key: bytes) -> str:
    """A stable id for a key given without one (its hash says nothing about the key)."""
    return "env-" + hashlib.sha256(b"fhir-server master key id\0" + key).hexdigest()[:16]


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise EncryptionKeyError(f"{where} is not base64") from None
    if len(key) != KEY_BYTES:
        raise EncryptionKeyError(f"{where} must be {KEY_BYTES} bytes (base64), not {len(key)}")
    return key


@dataclass(frozen=True, slots=True)
class MasterKeys:
    """The master key ring: `active` wraps, every key in `keys` can unwrap."""

    active: str
    keys: dict[str, bytes]
    file: Path | None = None  # where they came from (rotation rewrites it)

    @classmethod
    def from_env(cls, key: str) -> MasterKeys:
        raw = _decode_key(key, "FHIR_ENCRYPTION_KEY")
        return cls(key_id(raw), {key_id(raw): raw})

    @classmethod
    def from_file(cls, path: str | Path) -> MasterKeys:
        where = f"FHIR_ENCRYPTION_KEY_FILE {path}"
        try:
            data = json.loads(Path(path).read_text())
        except OSError as error:
            raise EncryptionKeyError(f"{where} cannot be read: {error.strerror}") from None
        except ValueError:
            raise EncryptionKeyError(f"{where} is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
            raise EncryptionKeyError(f'{where} must be {{"active": id, "keys": {{id: base64}}}}')
        keys = {str(k): _decode_key(str(v), f"{where} key {k}") for k, v in data["keys"].items()}
        active = data.get("active")
        if active not in keys:
            raise EncryptionKeyError(f"{where}: the active key {active!r} is not among its keys")
        return cls(str(active), keys, Path(path))

    @classmethod
    def configured(cls, key: str | None, key_file: str | None) -> MasterKeys | None:
        """The keys the settings name (the file wins), or None: encryption off."""
        if key_file:
            return cls.from_file(key_file)
        if key:
            return cls.from_env(key)
        return None

    def reload(self) -> MasterKeys:
        """The key file read again (a rotation may have added a key), or these keys."""
        return MasterKeys.from_file(self.file) if self.file else self

    def wrap(self, key: bytes, purpose: str) -> dict[str, str]:
        nonce = os.urandom(NONCE_BYTES)
        aad = f"wrap/{self.active}/{purpose}".encode()
        sealed = AESGCM(self.keys[self.active]).encrypt(nonce, key, aad)
        return {"kid": self.active, "key": base64.b64encode(nonce + sealed).decode()}

    def unwrap(self, wrapped: dict[str, str], purpose: str) -> bytes:
        kid = wrapped["kid"]
        master = self.keys.get(kid)
        if master is None:
            raise KeyMismatch(
                f"the database's data keys are wrapped by master key '{kid}', which the "
                "configured encryption keys do not include"
            )
        blob = base64.b64decode(wrapped["key"])
        try:
            return AESGCM(master).decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], f"wrap/{kid}/{purpose}".encode()
            )
        except InvalidTag:
            raise KeyMismatch(
                f"the encryption key '{kid}' is not the key this database's data keys were "
                "wrapped with"
            ) from None

    def with_new_key(self) -> MasterKeys:
        """These keys plus a fresh one, made active (for `keys rotate`)."""
        kid = time.strftime("k%Y%m%d%H%M%S-", time.gmtime()) + secrets.token_hex(3)
        return MasterKeys(kid, {**self.keys, kid: secrets.token_bytes(KEY_BYTES)}, self.file)

    def save(self, path: Path) -> None:
        """Write the key file atomically, readable by its owner only."""
        text = json.dumps(
            {
                "active": self.active,
                "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()},
            },
            indent=1,
        )
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".keys-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


@dataclass(slots=True)
class DataKeys:
    """The unwrapped data keys of one database and the key of its blind index."""

    active: str
    keys: dict[str, bytes]
    index: bytes
    aead: dict[str, AESGCM] = field(default_factory=dict)

    def cipher(self, kid: str) -> AESGCM | None:
        found = self.aead.get(kid)
        if found is None and kid in self.keys:
            found = self.aead[kid] = AESGCM(self.keys[kid])
        return found


def _keyring(master: MasterKeys, data: dict[str, bytes], active: str, index: bytes) -> bytes:
    doc: dict[str, Any] = {
        "version": 1,
        "active": active,
        "data": {kid: master.wrap(key, f"data/{kid}") for kid, key in data.items()},
        "index": master.wrap(index, "index"),
    }
    return json.dumps(doc, sort_keys=True).encode()


def _unwrap(master: MasterKeys, raw: bytes) -> DataKeys:
    doc = json.loads(raw)
    keys = {kid: master.unwrap(w, f"data/{kid}") for kid, w in doc["data"].items()}
    return DataKeys(doc["active"], keys, master.unwrap(doc["index"], "index"))


def _new_data_key_id(existing: dict[str, bytes]) -> str:
    return f"d{len(existing) + 1}-{secrets.token_hex(3)}"


async def open_data_keys(storage: StateStore, master: MasterKeys) -> DataKeys:
    """The database's data keys, unwrapped by `master`; created on first use.

    Raises `KeyMismatch` when `master` cannot unwrap them (a wrong key)."""
    holder = secrets.token_hex(8)
    deadline = time.monotonic() + 60
    while True:
        raw = await storage.load_state(KEYRING)
        if raw is not None:
            return _unwrap(master, raw)
        # the first start: one process creates the keyring (two would overwrite each other)
        if await storage.acquire_lease(KEYRING, holder, 30.0):
            try:
                if await storage.load_state(KEYRING) is None:
                    return await _create(storage, master)
            finally:
                await storage.release_lease(KEYRING, holder)
        elif time.monotonic() > deadline:
            raise EncryptionKeyError("another process holds the creation of the data keys")
        await asyncio.sleep(0.2)


async def _create(storage: StateStore, master: MasterKeys) -> DataKeys:
    kid = _new_data_key_id({})
    keys = DataKeys(kid, {kid: secrets.token_bytes(KEY_BYTES)}, secrets.token_bytes(KEY_BYTES))
    await storage.save_state(KEYRING, _keyring(master, keys.keys, kid, keys.index))
    return keys


async def is_encrypted(storage: StateStore) -> bool:
    """Whether the database holds a keyring (so encrypted data)."""
    return await storage.load_state(KEYRING) is not None


async def rotate(storage: StateStore, old: MasterKeys, new: MasterKeys) -> DataKeys:
    """Re-wrap the database's data keys (unwrapped by `old`) with `new`'s active key and add
    a fresh active data key for new writes. Older data keys stay: every version stays
    readable. One `save_state`: other processes see the old keyring or the new one."""
    holder = secrets.token_hex(8)
    if not await storage.acquire_lease(KEYRING, holder, 30.0):
        raise EncryptionKeyError("another process is changing the data keys; try again")
    try:
        raw = await storage.load_state(KEYRING)
        if raw is None:
            raise EncryptionKeyError("this database has no data keys yet (start the server once)")
        current = _unwrap(old, raw)
        kid = _new_data_key_id(current.keys)
        keys = {**current.keys, kid: secrets.token_bytes(KEY_BYTES)}
        await storage.save_state(KEYRING, _keyring(new, keys, kid, current.index))
        return DataKeys(kid, keys, current.index)
    finally:
        await storage.release_lease(KEYRING, holder)


async def reload_data_keys(storage: StateStore, master: MasterKeys) -> DataKeys:
    """The keyring as stored now, unwrapped with the key file as it is now."""
    raw = await storage.load_state(KEYRING)
    if raw is None:
        raise EncryptionKeyError("the database's encryption keyring is gone")
    return _unwrap(master.reload(), raw)
