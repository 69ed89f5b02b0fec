"""Reading Bundle.entry.request into work items for batch and transaction processing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_server.errors import BadRequest, FhirError

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


@dataclass
class Item:
    """One entry to process: its request line, conditional headers and resource."""

    index: int
    method: str = "GET"
    path: str = ""
    query: list[tuple[str, str]] = field(default_factory=list)
    full_url: str | None = None
    resource: dict | None = None
    if_none_exist: str | None = None
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    assigned_id: str | None = None
    error: FhirError | None = None  # a malformed entry (a batch answers it, a transaction fails)


def parse_items(bundle: dict, base: str) -> list[Item]:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest("Bundle.entry must be an array", expression=("Bundle.entry",))
    items = []
    for index, raw in enumerate(entries):
        item = Item(index)
        try:
            _fill(item, raw, base)
        except FhirError as error:
            item.error = error
        items.append(item)
    return items


def _fill(item: Item, raw: Any, base: str) -> None:
    where = f"Bundle.entry[{item.index}]"
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} is not an object", expression=(where,))
    request = raw.get("request")
    if not isinstance(request, dict):
        raise BadRequest(f"{where}.request is missing", expression=(f"{where}.request",))
    method = str(request.get("method", "")).upper()
    if method not in _METHODS:
        raise BadRequest(f"{where}.request.method '{method}' is not an HTTP verb FHIR uses",
                         expression=(f"{where}.request.method",))
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{where}.request.url is missing", expression=(f"{where}.request.url",))
    item.method = method
    item.path, item.query = _split_url(url, base, where)
    item.full_url = raw.get("fullUrl")
    if item.full_url is not None and not isinstance(item.full_url, str):
        raise BadRequest(f"{where}.fullUrl must be a string", expression=(f"{where}.fullUrl",))
    resource = raw.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise BadRequest(f"{where}.resource is not a resource", expression=(f"{where}.resource",))
    item.resource = resource
    item.if_none_exist = request.get("ifNoneExist")
    item.if_match = request.get("ifMatch")
    item.if_none_match = request.get("ifNoneMatch")
    item.if_modified_since = request.get("ifModifiedSince")


def _split_url(url: str, base: str, where: str) -> tuple[str, list[tuple[str, str]]]:
    if base and url.startswith(base + "/"):
        url = url[len(base) + 1 :]
    elif urlsplit(url).scheme:
        raise BadRequest(f"{where}.request.url '{url}' is not on this server",
                         expression=(f"{where}.request.url",))
    parts = urlsplit(url.lstrip("/"))
    return parts.path, parse_qsl(parts.query, keep_blank_values=True)
