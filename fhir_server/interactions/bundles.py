"""Building response Bundles from stored bytes, without re-serializing the resources.

A searchset or history page is assembled by splicing each stored resource's JSON bytes
into the entry, so a page of 20 Patients costs twenty byte copies, not twenty parses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.interactions.common import http_date, new_id, now_instant
from fhir_server.model import fhirjson
from fhir_server.storage.base import StoredResource


def bundle(
    type: str,
    entries: Iterable[bytes],
    *,
    total: int | None = None,
    links: Sequence[tuple[str, str]] = (),
    tags: Sequence[dict[str, str]] = (),
) -> bytes:
    """Bundle JSON bytes; `entries` are already-serialized entry objects; `tags` go to
    `meta.tag` (e.g. SUBSETTED when the access policy withheld some matches).

    No entries, no `entry` key: FHIR JSON allows no empty arrays
    (https://hl7.org/fhir/R4/json.html), so an empty searchset, `_summary=count` and an
    empty history carry only their total and links.
    """
    head: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": now_instant()},
        "type": type,
    }
    if tags:
        head["meta"]["tag"] = list(tags)
    if total is not None:
        head["total"] = total
    if links:
        head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    body = b",".join(entries)
    if not body:
        return orjson.dumps(head)
    return orjson.dumps(head)[:-1] + b',"entry":[' + body + b"]}"


def entry(
    full_url: str | None,
    resource: bytes | dict[str, Any] | None,
    **parts: Any,
) -> bytes:
    """One Bundle.entry: fullUrl, the resource (stored bytes or a dict), then `parts`."""
    head: dict[str, Any] = {}
    if full_url:
        head["fullUrl"] = full_url
    tail = orjson.dumps({k: v for k, v in parts.items() if v is not None})
    if resource is None:
        return orjson.dumps({**head, **orjson.loads(tail)})
    body = resource if isinstance(resource, bytes) else fhirjson.dumps(resource)
    out = orjson.dumps(head)[:-1]
    out += (b',"resource":' if head else b'"resource":') + body
    if tail != b"{}":
        out += b"," + tail[1:-1]
    return out + b"}"


def history_entry(base: str, rec: StoredResource) -> bytes:
    """A history entry: the version (none for a deletion), its request and response."""
    url = f"{rec.type}/{rec.id}"
    method = "POST" if rec.method == "POST" else rec.method
    request = {"method": method, "url": url if method != "POST" else rec.type}
    if method in ("PUT", "PATCH", "DELETE"):
        request["url"] = url
    status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK")
    response = {
        "status": status,
        "etag": f'W/"{rec.version}"',
        "lastModified": rec.last_updated,
    }
    return entry(
        f"{base}/{url}", None if rec.deleted else rec.data, request=request, response=response
    )


def page_links(
    base_url: str, params: Sequence[tuple[str, str]], count: int, offset: int, has_next: bool
) -> list[tuple[str, str]]:
    """self / previous / next links for offset paging over the same parameters."""
    kept = [(k, v) for k, v in params if k not in ("_count", "_offset")]

    def url(at: int) -> str:
        query = urlencode([*kept, ("_count", str(count)), ("_offset", str(at))])
        return f"{base_url}?{query}"

    links = [("self", url(offset))]
    if offset > 0:
        links.append(("previous", url(max(0, offset - count))))
    if has_next:
        links.append(("next", url(offset + count)))
    return links


__all__ = ["bundle", "entry", "history_entry", "http_date", "page_links"]
