"""A stand-in for the authorization server's KeyRing and store, for resource-server tests.

`TestKeyRing` has the three things the token check depends on (`public_jwks`, `refresh`,
and through `TestRevocations` the store's `revoked_jtis_since`), plus `sign` to mint
RFC 9068 access tokens with an RSA key generated for the test run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

AUDIENCE = "http://test/fhir"
ISSUER = "http://test/auth"


class TestKeyRing:
    """RSA signing keys generated in memory; `rotate` adds one that signs from then on."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self) -> None:
        self.keys: list[RSAKey] = []
        self.refreshes = 0
        self.hidden: set[str] = set()  # kids left out of public_jwks (a key not yet loaded)
        self._new_key()

    def _new_key(self) -> str:
        kid = uuid.uuid4().hex[:16]
        self.keys.append(
            RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})
        )
        return kid

    async def rotate(self) -> str:
        return self._new_key()

    async def refresh(self) -> None:
        self.refreshes += 1
        self.hidden.clear()

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in self.keys if k.kid not in self.hidden]}

    def sign(
        self, claims: dict[str, Any], *, typ: str = "at+jwt", key: RSAKey | None = None
    ) -> str:
        key = key or self.keys[-1]
        header = {"alg": "RS256", "kid": key.kid, "typ": typ}
        return jwt.encode(header, claims, key)

    def token(
        self,
        scope: str,
        *,
        patient: str | None = None,
        audience: str = AUDIENCE,
        issuer: str = ISSUER,
        lifetime: int = 3600,
        **extra: Any,
    ) -> str:
        """An access token as the authorization server mints them (contract 1)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": extra.pop("sub", "user-1"),
            "client_id": extra.pop("client_id", "app-1"),
            "scope": scope,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        if patient is not None:
            claims["patient"] = patient
        claims.update(extra)
        return self.sign(claims)


class TestRevocations:
    """The store's record of revoked access tokens: jti -> when it was revoked."""

    __test__ = False

    def __init__(self) -> None:
        self.revoked: dict[str, float] = {}
        self.calls = 0

    def revoke(self, jti: str) -> None:
        self.revoked[jti] = time.time()

    async def revoked_jtis_since(self, since: float) -> Iterable[str]:
        self.calls += 1
        return [jti for jti, at in self.revoked.items() if at >= since]
