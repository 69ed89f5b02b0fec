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
    resource: dict[str, Any] | None = None
    if_none_exist: str | None = None
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    assigned_id: str | None = None
    error: FhirError | None = None  # a malformed entry (a batch answers it, a transaction fails)


def parse_items(bundle: dict[str, Any], base: str) -> list[Item]:
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
    """Read one entry into `item`; a malformed entry is a 400 naming the element at fault."""
    where = f"Bundle.entry[{item.index}]"
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} is not an object", expression=(where,))
    request = raw.get("request")
    if not isinstance(request, dict):
        what = "is missing" if request is None else "is not an object"
        raise BadRequest(f"{where}.request {what}", expression=(f"{where}.request",))
    method = (_string(request, "method", f"{where}.request") or "").upper()
    if method not in _METHODS:
        raise BadRequest(
            f"{where}.request.method '{method}' is not an HTTP verb FHIR uses",
            expression=(f"{where}.request.method",),
        )
    url = _string(request, "url", f"{where}.request")
    if not url:
        raise BadRequest(f"{where}.request.url is missing", expression=(f"{where}.request.url",))
    item.method = method
    item.path, item.query = _split_url(url, base, where)
    item.full_url = _string(raw, "fullUrl", where)
    resource = raw.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise BadRequest(f"{where}.resource is not a resource", expression=(f"{where}.resource",))
    item.resource = resource
    item.if_none_exist = _string(request, "ifNoneExist", f"{where}.request")
    item.if_match = _string(request, "ifMatch", f"{where}.request")
    item.if_none_match = _string(request, "ifNoneMatch", f"{where}.request")
    item.if_modified_since = _string(request, "ifModifiedSince", f"{where}.request")


def _string(parent: dict[str, Any], name: str, where: str) -> str | None:
    """`parent[name]`: absent (None) or a string; any other JSON value is a 400."""
    value = parent.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{where}.{name} must be a string", expression=(f"{where}.{name}",))
    return value


def _split_url(url: str, base: str, where: str) -> tuple[str, list[tuple[str, str]]]:
    if base and url.startswith(base + "/"):
        url = url[len(base) + 1 :]
    elif urlsplit(url).scheme:
        raise BadRequest(
            f"{where}.request.url '{url}' is not on this server",
            expression=(f"{where}.request.url",),
        )
    parts = urlsplit(url.lstrip("/"))
    return parts.path, parse_qsl(parts.query, keep_blank_values=True)
