"""CDS clients' JWK sets fetched by URL, cached as their `Cache-Control` says.

Only URLs registered for a client are ever fetched (the verifier checks a `jku` against
the client's allow-list first), with short timeouts and a size cap, so a slow or huge
answer cannot hold a request. `max-age` (capped at a day) sets how long a set is kept;
`no-store`/`no-cache` keep it not at all; without either, `DEFAULT_SECONDS`. A `kid` not
in the cached set refetches it, at most once per `REFETCH_SECONDS` per URL.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import orjson

TIMEOUT = httpx.Timeout(5.0, connect=3.0)
DEADLINE = 8.0  # seconds for the whole answer
MAX_BYTES = 256 * 1024
DEFAULT_SECONDS = 300.0
MAX_SECONDS = 86400.0
REFETCH_SECONDS = 5.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


class Unreachable(Exception):
    """The JWK set could not be fetched or read (the message says why)."""


def lifetime(cache_control: str | None) -> float:
    """Seconds a response with this `Cache-Control` may be reused."""
    value = (cache_control or "").lower()
    if "no-store" in value or "no-cache" in value:
        return 0.0
    match = _MAX_AGE.search(value)
    return min(float(match.group(1)), MAX_SECONDS) if match else DEFAULT_SECONDS


class JwksCache:
    """JWK sets by URL (the client `http` is shared with the rest of CDS Hooks)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._fetched: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one fetch at a time per URL

    async def get(self, url: str, *, fresh: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        hit = self._cache.get(url)
        if hit is not None and hit[0] > now and not fresh:
            return hit[1]
        if hit is not None and fresh and now - self._fetched.get(url, 0.0) < REFETCH_SECONDS:
            return hit[1]
        async with self._locks.setdefault(url, asyncio.Lock()):
            jwks, seconds = await self._fetch(url)
            self._fetched[url] = time.monotonic()
            self._cache[url] = (self._fetched[url] + seconds, jwks)
        return jwks

    async def _fetch(self, url: str) -> tuple[dict[str, Any], float]:
        try:
            async with (
                asyncio.timeout(DEADLINE),
                self.http.stream(
                    "GET", url, headers={"Accept": "application/json"}, timeout=TIMEOUT
                ) as response,
            ):
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise Unreachable("the client's JWKS is too large")
        except (httpx.HTTPError, TimeoutError) as error:
            raise Unreachable(
                f"the client's JWKS cannot be fetched ({type(error).__name__})"
            ) from None
        if response.status_code != 200:
            raise Unreachable(f"the client's JWKS URL answered {response.status_code}")
        try:
            jwks = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Unreachable("the client's JWKS is not JSON") from None
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise Unreachable("the client's JWKS has no keys array")
        return jwks, lifetime(response.headers.get("cache-control"))
