"""The transaction Bundle one v2 message becomes, built so that a replay changes nothing.

https://hl7.org/fhir/R4/http.html#cond-update -- every resource about a real-world thing is a
conditional update (`PUT Type?identifier=system|value`), so the same patient, encounter or
practitioner is found again whichever message names it first. The body also carries an id
derived from the criteria: when nothing matches, the server creates it under that id, so two
messages racing to create the same thing write one resource. Entries reference each other by
`urn:uuid` fullUrls (deterministic too), which the server's transaction rewrites to Type/id.
A thing named twice in one message gets one entry (the first description wins).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from adapters.hl7v2.message import MessageError

_NAMESPACE = uuid.UUID("5d7c2f0e-6b0c-4f7a-9a51-2f6f1b0c8e11")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def stable_id(*parts: str) -> str:
    """A FHIR id (40 hex digits) from `parts`: the same parts, the same id."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


_PLAIN = re.compile(r"[A-Za-z0-9|:/._-]*")


def identifier_criteria(ident: dict[str, Any]) -> str:
    """The `identifier` search value for an Identifier: always `system|value`, since a bare
    value matches that value under every system (another sender's patient)."""
    value, system = ident["value"], ident.get("system")
    if not system:
        raise MessageError(
            f"Identifier '{value}' has no system: it cannot be matched safely", error_code="101"
        )
    token = f"{system}|{value}"
    if _PLAIN.fullmatch(token):  # nothing to escape: skip the (slow) quote
        return f"identifier={token}"
    return f"identifier={quote(token, safe='|:/.-_')}"


@dataclass
class _Entry:
    full_url: str
    resource: dict[str, Any]
    url: str
    method: str = "PUT"
    if_none_exist: str | None = None
    source: str = ""  # the segment that made it, e.g. "OBX^2"


class BundleBuilder:
    """Collects the entries of one message's transaction Bundle."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self.source = ""  # the segment being mapped (set by the maps): new entries record it

    def upsert(self, resource: dict[str, Any], criteria: str) -> str:
        """Conditional update `PUT Type?criteria`; returns the entry's urn:uuid reference."""
        type = resource["resourceType"]
        url = f"{type}?{criteria}"
        if url not in self._entries:
            body = {"resourceType": type, "id": stable_id(url), **_without_type(resource)}
            self._entries[url] = _Entry(_urn(url), body, url, source=self.source)
        return self._entries[url].full_url

    def put(self, resource: dict[str, Any], id: str) -> str:
        """Plain update `PUT Type/id` (for resources whose id the message determines)."""
        type = resource["resourceType"]
        url = f"{type}/{id}"
        if url not in self._entries:
            body = {"resourceType": type, "id": id, **_without_type(resource)}
            self._entries[url] = _Entry(_urn(url), body, url, source=self.source)
        return self._entries[url].full_url

    def create_if_none(self, resource: dict[str, Any], criteria: str) -> str:
        """Conditional create `POST Type` with If-None-Exist `criteria`: the resource is
        written only when nothing matches; its reference names the match otherwise."""
        type = resource["resourceType"]
        key = f"POST {type}?{criteria}"
        if key not in self._entries:
            self._entries[key] = _Entry(
                _urn(key),
                {"resourceType": type, **_without_type(resource)},
                type,
                "POST",
                criteria,
                self.source,
            )
        return self._entries[key].full_url

    def patch(self, type: str, criteria: str, parameters: dict[str, Any]) -> None:
        """Conditional patch `PATCH Type?criteria` with a FHIRPath Patch `parameters`."""
        key = f"PATCH {type}?{criteria}"
        self._entries.setdefault(
            key, _Entry(_urn(key), parameters, f"{type}?{criteria}", "PATCH", source=self.source)
        )

    def resource(self, ref: str) -> dict[str, Any]:
        """The resource of the entry `ref` names (to add to it after the fact)."""
        return next(e.resource for e in self._entries.values() if e.full_url == ref)

    def sources(self) -> tuple[str, ...]:
        """The segment each entry of `bundle()` came from, in entry order."""
        return tuple(e.source for e in self._entries.values())

    def references(self) -> list[str]:
        return [e.full_url for e in self._entries.values()]

    def bundle(self) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": e.full_url,
                    "resource": e.resource,
                    "request": {
                        "method": e.method,
                        "url": e.url,
                        **({"ifNoneExist": e.if_none_exist} if e.if_none_exist else {}),
                    },
                }
                for e in self._entries.values()
            ],
        }


def _urn(key: str) -> str:
    """`urn:uuid:` + uuid5(_NAMESPACE, key), formatted without building a UUID object."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + key.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _without_type(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("resourceType", "id")}
