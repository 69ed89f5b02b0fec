"""RFC 7523 client assertions (`private_key_jwt`), as SMART Backend Services profiles them.

https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html -- "the
authorization server SHALL ... check that the `jti` value has not been previously
encountered for the given `iss` within the maximum allowed authentication JWT lifetime
(e.g., 5 minutes)"; `iss` and `sub` are the client_id; `aud` is the token URL; `exp` is
"no more than five minutes in the future"; servers SHALL support RS384 and ES384. The key
is the one whose `kid` (and key type, for the `alg`) matches, from the client's registered
JWKS URL, its inline JWKS, or a `jku` header that is on the client's allow-list.

Every failure is an `invalid_client` error (SMART: "the server SHALL respond with an
invalid_client error"), with a description that names the check.

joserfc accepts only its "recommended" algorithms unless `algorithms` is given: we pass the
asymmetric ones explicitly, so RS384 and ES384 work and `none` and HS* never do.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidClientError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhir_server.auth.clients import Client
from fhir_server.auth.store import AuthStore

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384", "RS256", "ES256", "RS512", "ES512")
KEY_TYPE = {"RS": "RSA", "ES": "EC"}
MAX_LIFETIME = 300  # seconds an assertion's `exp` may lie ahead
SKEW = 30  # seconds of clock difference we tolerate
JWKS_TIMEOUT = 5.0  # seconds to fetch a client's JWKS
JWKS_MAX_BYTES = 256 * 1024
JWKS_CACHE_SECONDS = 60


class JwksCache:
    """Client JWK sets fetched by URL, kept a minute; refetched when a `kid` is missing."""

    def __init__(self, fetch: Callable[[str], dict[str, Any]] | None = None) -> None:
        self._fetch = fetch or fetch_jwks
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, *, fresh: bool = False) -> dict[str, Any]:
        with self._lock:
            hit = self._cache.get(url)
        if hit and not fresh and hit[0] > time.monotonic():
            return hit[1]
        jwks = self._fetch(url)
        with self._lock:
            self._cache[url] = (time.monotonic() + JWKS_CACHE_SECONDS, jwks)
        return jwks


def fetch_jwks(url: str) -> dict[str, Any]:
    """GET a JWK set: a short timeout and a size cap, so a slow or huge answer cannot hold
    the token endpoint."""
    if not url.startswith(("https://", "http://")):
        raise _refuse("the JWKS URL is not an http(s) URL")
    try:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=JWKS_TIMEOUT) as response:
            body = response.read(JWKS_MAX_BYTES + 1)
    except OSError as error:
        raise _refuse(f"the client JWKS could not be fetched ({type(error).__name__})") from None
    if len(body) > JWKS_MAX_BYTES:
        raise _refuse("the client JWKS is too large")
    try:
        jwks = json.loads(body)
    except ValueError:
        raise _refuse("the client JWKS is not JSON") from None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise _refuse("the client JWKS has no keys array")
    return jwks


def authenticate_assertion(
    form: dict[str, str],
    *,
    token_url: str,
    store: AuthStore,
    query_client: Callable[[str], Client | None],
    cache: JwksCache,
) -> Client | None:
    """The client a `private_key_jwt` assertion proves, or None when the request carries
    none (then another method may apply). Raises `InvalidClientError` when it fails."""
    assertion = form.get("client_assertion")
    if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
        return None
    header, unverified = _peek(assertion)
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise _refuse(f"the assertion algorithm {alg} is not accepted; use RS384 or ES384")
    client_id = unverified.get("iss")
    if not isinstance(client_id, str) or unverified.get("sub") != client_id:
        raise _refuse("the assertion iss and sub must both be the client_id")
    if form.get("client_id") not in (None, client_id):
        raise _refuse("client_id does not match the assertion")
    client = query_client(client_id)
    if client is None or client.kind != "asymmetric":
        raise _refuse("no client registered for public-key authentication has this client_id")
    key = _key(client, header, cache)
    try:
        claims = jwt.decode(assertion, key, algorithms=[alg]).claims
    except (JoseError, ValueError):
        raise _refuse("the assertion signature does not verify") from None
    _check_claims(claims, client_id, token_url)
    if not store.use_assertion(client_id, claims["jti"], float(claims["exp"])):
        raise _refuse("the assertion jti was already used")
    return client


def _peek(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before verification: they say which client and key to use."""
    try:
        header_b64, claims_b64, _ = assertion.split(".")
        header, claims = (
            json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            for part in (header_b64, claims_b64)
        )
    except ValueError:
        raise _refuse("the assertion is not a compact JWS") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _refuse("the assertion is not a compact JWS")
    return header, claims


def _key(client: Client, header: dict[str, Any], cache: JwksCache) -> Any:
    """The client's key with the header's `kid` and the key type its `alg` needs."""
    jku = header.get("jku")
    if jku is not None and jku not in client.jku_allowed:
        raise _refuse("the jku header is not on the client's allow-list")
    url = jku or client.doc.get("jwks_url")
    wanted = {"kid": header.get("kid"), "kty": KEY_TYPE[str(header["alg"])[:2]]}
    jwks = cache.get(url) if url else client.doc.get("jwks") or {"keys": []}
    key = _select(jwks, wanted)
    if key is None and url:  # the client may have rotated its keys since we cached them
        key = _select(cache.get(url, fresh=True), wanted)
    if key is None:
        raise _refuse(f"no key of the client has kid {wanted['kid']} and kty {wanted['kty']}")
    return key


def _select(jwks: dict[str, Any], wanted: dict[str, Any]) -> Any:
    matching = [
        k
        for k in jwks.get("keys", [])
        if isinstance(k, dict) and k.get("kid") == wanted["kid"] and k.get("kty") == wanted["kty"]
    ]
    if not matching:
        return None
    try:
        return KeySet.import_key_set({"keys": matching[:1]}).keys[0]
    except (JoseError, ValueError, TypeError):
        raise _refuse("the client's key could not be read") from None


def _check_claims(claims: dict[str, Any], client_id: str, token_url: str) -> None:
    now = time.time()
    aud = claims.get("aud")
    if token_url not in (aud if isinstance(aud, list) else [aud]):
        raise _refuse("the assertion aud must be the token endpoint URL")
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise _refuse("the assertion has no exp")
    if exp < now - SKEW:
        raise _refuse("the assertion has expired")
    if exp > now + MAX_LIFETIME + SKEW:
        raise _refuse("the assertion exp is more than 5 minutes ahead")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + SKEW:
        raise _refuse("the assertion is not valid yet")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise _refuse("the assertion has no jti")


def _refuse(description: str) -> InvalidClientError:
    return InvalidClientError(description=description)
