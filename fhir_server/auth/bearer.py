"""The resource server's token check: an RFC 9068 access token in, an `AccessContext` out.

https://www.rfc-editor.org/rfc/rfc9068#section-4 -- "Resource servers receiving a JWT
access token MUST validate it": the `typ` header (`at+jwt`), the issuer, the audience (our
FHIR base URL), the signature (RS256, by a key of the authorization server's JWKS chosen
by `kid`) and the expiry; here also that its `jti` was not revoked.
https://www.rfc-editor.org/rfc/rfc6750#section-3 -- a request without a token gets 401
with `WWW-Authenticate: Bearer`; a bad one also `error="invalid_token"`.

Nothing here reads the database per request: the public keys are held in memory (read
again when a token names an unknown `kid`, at most once per `KEY_RELOAD` seconds), revoked
`jti`s are an in-memory set refreshed at most once per `REVOKED_RELOAD` seconds, and a
verified token's context is kept (bounded LRU) until the token expires, so a client
repeating its token pays one dictionary lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhir_server.auth.scopes import split_scope
from fhir_server.context import AccessContext
from fhir_server.errors import Unauthorized

log = logging.getLogger("fhir_server.auth")

ALGORITHMS = ("RS256",)
TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
KEY_RELOAD = 5.0  # seconds between two reloads of the keys for an unknown kid
REVOKED_RELOAD = 1.0  # seconds between two refreshes of the revoked jtis
LEEWAY = 30  # seconds of clock skew allowed on exp, iat and nbf
CACHE_SIZE = 10_000  # verified tokens remembered


class KeySource(Protocol):
    """The authorization server's keys (its KeyRing): public JWKS, reloadable."""

    def public_jwks(self) -> dict[str, Any]: ...

    async def refresh(self) -> None: ...


class RevokedSource(Protocol):
    """Where revoked access tokens are recorded (the authorization server's store)."""

    async def revoked_jtis_since(self, since: float) -> Iterable[str]:
        """The `jti`s revoked at or after `since` (seconds since the epoch)."""
        ...


def challenge(error: str | None = None, description: str | None = None) -> dict[str, str]:
    """The `WWW-Authenticate` header of a 401 (RFC 6750 section 3)."""
    value = 'Bearer realm="fhir"'
    if error:
        value += f', error="{error}"'
    if description:
        value += ', error_description="{}"'.format(description.replace('"', "'"))
    return {"WWW-Authenticate": value}


def invalid_token(description: str) -> Unauthorized:
    return Unauthorized(
        f"Invalid access token: {description}", headers=challenge("invalid_token", description)
    )


def expected_issuer(audience: str, configured: str | None = None) -> str:
    """The issuer our tokens carry: configured, or `{origin of the FHIR base}/auth`."""
    if configured:
        return configured.rstrip("/")
    parts = urlsplit(audience)
    return f"{parts.scheme}://{parts.netloc}/auth"


class BearerVerifier:
    """Verifies `Authorization: Bearer` headers against `keys` and the revoked `jti`s."""

    def __init__(
        self,
        keys: KeySource,
        revoked: RevokedSource | None = None,
        *,
        issuer: str | None = None,
        leeway: int = LEEWAY,
        cache_size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.revoked_source = revoked
        self.issuer = issuer
        self.leeway = leeway
        self.clock = clock
        self._cache: OrderedDict[tuple[str, str], tuple[AccessContext, float]] = OrderedDict()
        self._cache_size = cache_size
        self._key_set: KeySet | None = None
        self._jwks: dict[str, Any] | None = None
        self._keys_loaded = float("-inf")
        self._revoked: set[str] = set()
        self._revoked_at: float | None = None
        self._revoked_lock = asyncio.Lock()

    async def verify(self, authorization: str | None, audience: str) -> AccessContext:
        """The caller `authorization` (the header's value) stands for, or `Unauthorized`."""
        token = _bearer_token(authorization)
        await self._refresh_revoked()
        now = self.clock()
        cached = self._cache.get((token, audience))
        if cached is not None:
            ctx, expires = cached
            if now <= expires + self.leeway and ctx.jti not in self._revoked:
                self._cache.move_to_end((token, audience))
                return ctx
            del self._cache[(token, audience)]
        ctx, expires = await self._verify(token, audience, now)
        self._cache[(token, audience)] = (ctx, expires)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return ctx

    async def _verify(self, token: str, audience: str, now: float) -> tuple[AccessContext, float]:
        try:
            header = jws.extract_compact(token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError):
            raise invalid_token("not a signed JWT") from None
        if str(header.get("typ", "")).lower() not in TOKEN_TYPES:
            raise invalid_token("not an access token (typ must be at+jwt)")
        if header.get("alg") not in ALGORITHMS:
            raise invalid_token("unsupported signing algorithm")
        key_set = await self._key_set_with(header.get("kid"))
        try:
            claims = jwt.decode(token, key_set, algorithms=list(ALGORITHMS)).claims
            self._claims(audience, now).validate(claims)
        except (JoseError, ValueError) as error:
            raise invalid_token(_why(error)) from None
        if claims.get("jti") in self._revoked:
            raise invalid_token("the token was revoked")
        return context_of(claims), float(claims["exp"])

    def _claims(self, audience: str, now: float) -> jwt.JWTClaimsRegistry:
        return jwt.JWTClaimsRegistry(
            now=int(now),
            leeway=self.leeway,
            iss={"essential": True, "value": expected_issuer(audience, self.issuer)},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
            client_id={"essential": True},
            scope={"essential": True},
        )

    async def _key_set_with(self, kid: object) -> KeySet:
        """The public keys, reloaded (rate-limited) when none has the token's `kid`."""
        if not isinstance(kid, str) or not kid:
            raise invalid_token("the token names no key (kid)")
        key_set = self._current_key_set()
        if not _has_kid(key_set, kid) and self.clock() - self._keys_loaded >= KEY_RELOAD:
            self._keys_loaded = self.clock()
            await self.keys.refresh()
            key_set = self._current_key_set()
        if not _has_kid(key_set, kid):
            raise invalid_token("signed by an unknown key")
        return key_set

    def _current_key_set(self) -> KeySet:
        jwks = self.keys.public_jwks()
        if self._key_set is None or jwks != self._jwks:
            self._key_set, self._jwks = KeySet.import_key_set(jwks), jwks  # type: ignore[arg-type]
        return self._key_set

    async def _refresh_revoked(self) -> None:
        """Read the newly revoked jtis, at most once per `REVOKED_RELOAD` seconds (a request
        that finds a refresh under way goes on with the set as it is)."""
        now = self.clock()
        if (
            self.revoked_source is None
            or self._revoked_lock.locked()
            or (self._revoked_at is not None and now - self._revoked_at < REVOKED_RELOAD)
        ):
            return
        async with self._revoked_lock:
            since = 0.0 if self._revoked_at is None else self._revoked_at - REVOKED_RELOAD
            try:
                self._revoked.update(await self.revoked_source.revoked_jtis_since(since))
            except Exception:  # a store hiccup must not open the door: retry next request
                log.exception("could not read the revoked access tokens")
                if self._revoked_at is None:
                    raise invalid_token("revocations cannot be checked now") from None
                return
            self._revoked_at = now


def context_of(claims: dict[str, Any]) -> AccessContext:
    """The access context a verified token's claims give."""

    def text(name: str) -> str | None:
        value = claims.get(name)
        return value if isinstance(value, str) and value else None

    return AccessContext(
        subject=str(claims["sub"]),
        scopes=split_scope(str(claims.get("scope", ""))),
        patient=text("patient"),
        client_id=text("client_id"),
        fhir_user=text("fhirUser"),
        encounter=text("encounter"),
        role=text("role"),
        jti=text("jti"),
        purposes=_purposes(claims.get("purpose_of_use")),
    )


def _purposes(claim: Any) -> frozenset[str]:
    """The `purpose_of_use` claim (space-separated codes, or a list of them) as a set."""
    if isinstance(claim, str):
        return frozenset(claim.split())
    if isinstance(claim, list):
        return frozenset(c for c in claim if isinstance(c, str) and c)
    return frozenset()


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized(
            "This server needs an access token (Authorization: Bearer ...)", headers=challenge()
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized(
            f"The {scheme} authorization scheme is not accepted: use Bearer", headers=challenge()
        )
    token = token.strip()
    if not token or " " in token:
        raise invalid_token("the Bearer credentials are not one token")
    return token


def _has_kid(key_set: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in key_set.keys)


def _why(error: Exception) -> str:
    name = type(error).__name__
    if name == "ExpiredTokenError":
        return "the token has expired"
    if name == "BadSignatureError":
        return "the signature does not verify"
    if isinstance(error, JoseError) and error.description:
        return str(error.description).rstrip(".")
    return "the token cannot be verified"
