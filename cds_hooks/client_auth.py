"""Who is calling: the CDS client's JWT, https://cds-hooks.hl7.org/2.0/#trusting-cds-clients

"Each time a CDS Client transmits a request to a CDS Service ... the request MUST include
an Authorization header presenting the JWT as a "Bearer" token"; the JWT header carries
`alg` ("The CDS Service MUST support ES384 and RS384"), `kid` (REQUIRED), `typ` ("JWT")
and optionally `jku`, "a URL ... of the CDS Client's JWK set ... The CDS Service SHOULD
maintain an allowlist of these URLs"; the payload `iss` (the client), `aud` ("The CDS
Service's endpoint that is being called by the CDS Client"), `exp`, `iat` and `jti` ("A
nonce string value that uniquely identifies this authentication JWT (used to protect
against replay attacks)").

Here: only ES384 and RS384 (never `none` or an HMAC, whatever key bytes sign it); `iss`
must be a registered client; the key comes from its inline JWK set or a URL registered
for it (a `jku` must be one of those); `aud` must be the exact URL called; `exp` no more
than five minutes ahead; `iat` not in the future (a small leeway for clocks); each `jti`
once per client until it expires. Every refusal is a 401 that names the check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from cds_hooks.jwks import JwksCache, Unreachable
from cds_hooks.store import CdsClient, CdsStore
from fhir_server.auth.bearer import challenge
from fhir_server.errors import Unauthorized

ALGORITHMS = ("ES384", "RS384")
KEY_TYPES = {"ES384": "EC", "RS384": "RSA"}
LEEWAY = 30  # seconds of clock difference tolerated on exp and iat
MAX_LIFETIME = 300  # seconds `exp` may lie ahead (the CDS Hooks sandbox uses 5 minutes)


def refused(why: str) -> Unauthorized:
    return Unauthorized(
        f"CDS client authentication failed: {why}", headers=challenge("invalid_token", why)
    )


class CdsClientVerifier:
    """Checks the `Authorization` header of a CDS Hooks request; returns the client."""

    def __init__(
        self, store: CdsStore, jwks: JwksCache, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.jwks = jwks
        self.clock = clock

    async def verify(self, authorization: str | None, audience: str) -> CdsClient:
        token = _bearer(authorization)
        header, claims = _peek(token)
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise refused(f"the algorithm {alg} is not accepted; use ES384 or RS384")
        if header.get("typ") != "JWT":
            raise refused("the JWT header needs typ JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise refused("the JWT header needs a kid")
        iss = claims.get("iss")
        client = await asyncio.to_thread(self.store.client, iss) if isinstance(iss, str) else None
        if client is None:
            raise refused("the iss is not a registered CDS client")
        key = await self._key(client, header.get("jku"), kid, KEY_TYPES[alg])
        try:
            verified = jwt.decode(token, key, algorithms=[alg]).claims
        except (JoseError, ValueError):
            raise refused("the signature does not verify") from None
        exp = self._check(verified, audience)
        if not await asyncio.to_thread(self.store.use_jti, client.iss, verified["jti"], exp):
            raise refused("the jti was already used (a replay)")
        return client

    async def _key(self, client: CdsClient, jku: object, kid: str, kty: str) -> Any:
        if jku is not None and jku not in client.jwks_urls:
            raise refused("the jku is not on the client's allow-list")
        url = jku if isinstance(jku, str) else (client.jwks_urls[0] if client.jwks_urls else None)
        try:
            key_set = await self.jwks.get(url) if url else client.jwks or {"keys": []}
            key = _select(key_set, kid, kty)
            if key is None and url:  # keys may have rotated since they were cached
                key = _select(await self.jwks.get(url, fresh=True), kid, kty)
        except Unreachable as error:
            raise refused(str(error)) from None
        if key is None:
            raise refused(f"no {kty} key of the client has kid {kid}")
        return key

    def _check(self, claims: dict[str, Any], audience: str) -> float:
        """The claims' checks; returns `exp`."""
        now = self.clock()
        aud = claims.get("aud")
        if audience not in (aud if isinstance(aud, list) else [aud]):
            raise refused(f"the aud must be the URL called ({audience})")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise refused("the JWT needs exp and iat")
        if exp < now - LEEWAY:
            raise refused("the JWT has expired")
        if exp > now + MAX_LIFETIME + LEEWAY:
            raise refused("the JWT exp is more than 5 minutes ahead")
        if iat > now + LEEWAY:
            raise refused("the JWT iat is in the future")
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise refused("the JWT needs a jti")
        return float(exp)


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "CDS Hooks requests need Authorization: Bearer <JWT>", headers=challenge()
        )
    return token.strip()


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before verification: they say which client and key to use."""
    try:
        compact = jws.extract_compact(token.encode("ascii"))
        claims = orjson.loads(compact.payload)
    except (JoseError, ValueError, UnicodeError):
        raise refused("not a signed JWT") from None
    if not isinstance(claims, dict):
        raise refused("the JWT claims are not an object")
    return dict(compact.protected), claims


def _select(jwks: dict[str, Any], kid: str, kty: str) -> Any:
    matching = [
        k
        for k in jwks.get("keys", [])
        if isinstance(k, dict) and k.get("kid") == kid and k.get("kty") == kty
    ]
    if not matching:
        return None
    try:
        return KeySet.import_key_set({"keys": matching[:1]}).keys[0]
    except (JoseError, ValueError, TypeError):
        raise refused("the client's key cannot be read") from None
