"""KeyRing: the server's RSA signing keys (RS256), kept in the AuthStore, with rotation.

The newest key signs; every key verifies until it expires (`auth_key_lifetime` after its
creation), so tokens signed before a rotation stay valid for their own lifetime. The public
JWKS lists every unexpired key. `load` creates a first key when there is none, and a new one
when the newest would expire before the longest-lived token it signs.

Private keys are stored as JWKs in the auth database: protect that file (or collection)
as you protect the server's TLS key.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

from fhir_server.auth.store import AuthStore

ALGORITHM = "RS256"
KEY_SIZE = 2048


class KeyRing:
    """Signs tokens with the newest key; publishes every unexpired public key."""

    def __init__(
        self, store: AuthStore, *, key_lifetime: int = 90 * 86400, longest_token: int = 30 * 86400
    ) -> None:
        self.store = store
        self.key_lifetime = key_lifetime
        self.longest_token = longest_token  # a key must outlive what it signs
        self._keys: list[tuple[dict[str, Any], RSAKey]] = []

    async def load(self) -> None:
        """Read the keys; create one when none would outlive a token signed now."""
        await self.refresh()
        if not self._keys or self._keys[-1][0]["expires"] < time.time() + self.longest_token:
            await self.rotate()

    async def refresh(self) -> None:
        """Re-read the keys from the store (after another process rotated them)."""
        docs = await asyncio.to_thread(self.store.keys)
        self._keys = [
            (doc, RSAKey.import_key(doc["jwk"])) for doc in sorted(docs, key=lambda d: d["created"])
        ]

    async def rotate(self) -> str:
        """Create a new signing key; the old ones keep verifying until they expire."""
        kid = uuid.uuid4().hex
        key = RSAKey.generate_key(KEY_SIZE, parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"})
        now = time.time()
        doc = {
            "id": kid,
            "jwk": dict(key.as_dict(private=True)),
            "created": now,
            "expires": now + self.key_lifetime,
        }
        await asyncio.to_thread(self.store.add_key, doc)
        await self.refresh()
        return kid

    @property
    def signing_kid(self) -> str:
        return str(self._signing()[0]["id"])

    def sign(self, claims: dict[str, Any], *, typ: str = "at+jwt") -> str:
        """A compact JWS (RS256) of `claims` with the newest key, `kid` and `typ` set."""
        doc, key = self._signing()
        header = {"alg": ALGORITHM, "kid": doc["id"], "typ": typ}
        return jwt.encode(header, claims, key, algorithms=[ALGORITHM])

    def public_jwks(self) -> dict[str, Any]:
        """{"keys": [...]}: the public half of every unexpired key."""
        now = time.time()
        return {
            "keys": [
                dict(key.as_dict(private=False)) for doc, key in self._keys if doc["expires"] > now
            ]
        }

    def verify(self, token: str) -> jwt.Token:
        """Decode a token this server signed (signature only; the caller checks claims)."""
        from joserfc.jwk import KeySet

        keys = KeySet([key for doc, key in self._keys if doc["expires"] > time.time()])
        return jwt.decode(token, keys, algorithms=[ALGORITHM])

    def _signing(self) -> tuple[dict[str, Any], RSAKey]:
        if not self._keys:
            raise RuntimeError("KeyRing.load() has not run")
        return self._keys[-1]
