"""Shared things a process has just written, so the next message need not write them again.

Every ADT message names the sending facility (an Organization), the sending and receiving
applications (Devices), the places of its point of care (Locations) and doctors
(Practitioners, PractitionerRoles): the same resources, with the same content, message after
message. Each is a conditional update that changes nothing, yet costs a validation, a
search, a read and a comparison. `Known` remembers, per conditional URL, the content this
process last committed and where it was stored; a converted entry with exactly that content
is left out of the next transaction and the references to it point at the stored resource.

What is remembered expires after `ttl` seconds, so a change made to such a resource through
the REST API is overwritten again by the next message after at most that long (as it always
was, at once); it is forgotten at once when a transaction fails, and never used across
processes (each keeps its own).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any

import orjson

SHARED = frozenset({"Organization", "Device", "Location", "Practitioner", "PractitionerRole"})
"""The types worth remembering: things of the real world many messages name unchanged."""


def _digest(resource: dict[str, Any]) -> bytes:
    return hashlib.blake2b(
        orjson.dumps(resource, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).digest()


class Known:
    def __init__(self, size: int = 10_000, ttl: float = 60.0) -> None:
        self.size = size
        self.ttl = ttl
        self._known: OrderedDict[str, tuple[bytes, str, float]] = OrderedDict()  # url -> ...

    def prune(
        self, bundle: dict[str, Any], sources: tuple[str, ...]
    ) -> tuple[dict[str, Any], tuple[str, ...], list[tuple[str, bytes]]]:
        """`bundle` without the entries already stored with the same content (references to
        them rewritten to `Type/id`), the `sources` of the entries kept, and the (url,
        digest) of each shared entry kept (to `learn` once committed)."""
        now = time.monotonic()
        rewrite: dict[str, str] = {}
        kept: list[dict[str, Any]] = []
        kept_sources: list[str] = []
        pending: list[tuple[str, bytes]] = []
        for n, entry in enumerate(bundle["entry"]):
            request = entry["request"]
            resource = entry.get("resource") or {}
            url = request.get("url", "")
            if (
                request.get("method") == "PUT"
                and "?" in url
                and resource.get("resourceType") in SHARED
            ):
                digest = _digest(resource)
                found = self._known.get(url)
                if found is not None and found[0] == digest and now - found[2] < self.ttl:
                    rewrite[entry["fullUrl"]] = found[1]
                    continue
                pending.append((url, digest))
            kept.append(entry)
            kept_sources.append(sources[n] if n < len(sources) else "")
        if not rewrite:
            return bundle, sources, pending
        entries = [_rewritten(e, rewrite) for e in kept]
        return {**bundle, "entry": entries}, tuple(kept_sources), pending

    def learn(self, pending: list[tuple[str, bytes]], bundle: dict[str, Any], answer: Any) -> None:
        """Remember where the transaction `answer` (bytes of the response Bundle) stored the
        shared entries of `bundle` that `prune` listed in `pending`."""
        if not pending or not isinstance(answer, bytes | bytearray):
            return
        responses = orjson.loads(answer).get("entry") or []
        wanted = dict(pending)
        now = time.monotonic()
        for entry, response in zip(bundle["entry"], responses, strict=False):
            url = entry["request"].get("url", "")
            digest = wanted.get(url)
            location = (response.get("response") or {}).get("location", "")
            if digest is None or not location:
                continue
            parts = location.split("/")
            at = parts.index("_history") if "_history" in parts else len(parts)
            if at < 2:
                continue
            self._known[url] = (digest, f"{parts[at - 2]}/{parts[at - 1]}", now)
            self._known.move_to_end(url)
        while len(self._known) > self.size:
            self._known.popitem(last=False)

    def forget(self) -> None:
        self._known.clear()


def _rewritten(value: Any, rewrite: dict[str, str]) -> Any:
    if isinstance(value, str):
        return rewrite.get(value, value)
    if isinstance(value, dict):
        return {k: _rewritten(v, rewrite) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewritten(v, rewrite) for v in value]
    return value
