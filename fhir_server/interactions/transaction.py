"""FHIR batch and transaction interactions.

https://hl7.org/fhir/R4/http.html#transaction -- a transaction is processed as one unit:
"either all actions are performed successfully or none are". Entries run in the order
DELETE, POST, PUT/PATCH, then GET/HEAD; every `fullUrl` a POST (or a conditional update)
gives is replaced by the new `Type/id` wherever the other entries link to it (references,
uri/url/oid/uuid elements, narrative href and src: see `links.py`), and conditional
references (`Patient?identifier=...`) resolve to their single match.
https://hl7.org/fhir/R4/http.html#brules -- a batch runs each entry on its own; a failing
entry gets an error response and the others still happen.
There is no entry cap: all entries share one storage transaction.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson

from fhir_server.errors import BadRequest, FhirError, PreconditionFailed
from fhir_server.interactions.bundle_entries import Item, parse_items
from fhir_server.interactions.bundles import bundle, entry
from fhir_server.interactions.common import new_id
from fhir_server.interactions.links import Link, edit_links
from fhir_server.interactions.request import Request, Response

if TYPE_CHECKING:
    from fhir_server.interactions.routes import RouteMatch
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


async def handle(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    body = req.body
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base needs a Bundle of type batch or transaction")
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest(
            f"Bundle type '{kind}' cannot be processed; use batch or transaction",
            expression=("Bundle.type",),
        )
    items = parse_items(body, req.base)
    if kind == "batch":
        return await _batch(svc, req, items)
    return await svc.in_transaction(tx, lambda db: _transaction(svc, req, items, db))


async def _batch(svc: FhirService, req: Request, items: list[Item]) -> Response:
    results: list[bytes] = []
    for item in items:
        await asyncio.sleep(0)  # between entries, other requests get the event loop
        if item.error is not None:
            results.append(_error_entry(item.error))
            continue
        try:
            response = await svc.handle(_sub_request(req, item))
        except FhirError as error:
            results.append(_error_entry(error))
            continue
        results.append(_response_entry(req, response))
    return Response(200, bundle("batch-response", results))


async def _transaction(
    svc: FhirService, req: Request, items: list[Item], db: StorageTx
) -> Response:
    for item in items:
        if item.error is not None:
            raise _at(item, item.error)
    _reject_duplicates(items)
    ids = await _assign_ids(svc, req, items, db)
    for item in items:
        await asyncio.sleep(0)  # between entries, other requests get the event loop
        if item.resource is not None:
            item.resource = await _rewritten(svc, req, db, item, ids)
    responses: dict[int, Response] = {}
    for item in sorted(items, key=lambda i: (_ORDER[i.method], i.index)):
        await asyncio.sleep(0)  # between entries, other requests get the event loop
        try:
            responses[item.index] = await svc.handle(_sub_request(req, item), db)
        except FhirError as error:
            raise _at(item, error) from error
    results = [_response_entry(req, responses[i.index]) for i in items]
    return Response(200, bundle("transaction-response", results))


async def _rewritten(
    svc: FhirService, req: Request, db: StorageTx, item: Item, ids: dict[str, str]
) -> dict[str, Any]:
    """The entry's resource with its links rewritten; what fails names the entry."""
    assert item.resource is not None
    try:
        return await _rewrite(svc, req, db, item.resource, ids)
    except RecursionError:
        raise _at(item, BadRequest("The resource is nested too deeply to be processed")) from None
    except FhirError as error:
        raise _at(item, error) from error


def _reject_duplicates(items: list[Item]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.method in ("PUT", "PATCH", "DELETE") and not item.query:
            if item.path in seen:
                raise _at(item, BadRequest(f"{item.path} appears twice in the transaction"))
            seen.add(item.path)


async def _assign_ids(
    svc: FhirService, req: Request, items: list[Item], db: StorageTx
) -> dict[str, str]:
    """fullUrl → Type/id for every entry that creates or updates, resolving conditionals."""
    ids: dict[str, str] = {}
    for item in items:
        await asyncio.sleep(0)  # between entries, other requests get the event loop
        try:
            target = await _target(svc, req, item, db)
        except FhirError as error:
            raise _at(item, error) from error
        if target is not None and item.full_url:
            ids[item.full_url] = target
    return ids


async def _target(svc: FhirService, req: Request, item: Item, db: StorageTx) -> str | None:
    """The Type/id an entry creates or updates (None for other entries)."""
    assert req.context
    type = item.path.split("/")[0]
    if item.method == "POST":
        item.assigned_id = new_id()
        if item.if_none_exist:
            found = await svc.find(db, req.context, type, item.if_none_exist)
            if len(found) > 1:
                raise PreconditionFailed(
                    f"If-None-Exist '{item.if_none_exist}' matches more than one {type}"
                )
            if found:
                item.assigned_id = found[0].id
        return f"{type}/{item.assigned_id}"
    if item.method == "PUT" and item.query:
        return await _resolve_conditional_update(svc, req, item, db)
    if item.method == "PUT":
        return item.path
    return None


async def _resolve_conditional_update(
    svc: FhirService, req: Request, item: Item, db: StorageTx
) -> str:
    """Turn `PUT Type?criteria` into `PUT Type/id` (the single match, or a new id)."""
    assert req.context
    type = item.path
    found = await svc.find(db, req.context, type, item.query)
    if len(found) > 1:
        raise PreconditionFailed(f"The criteria match more than one {type}")
    body_id = (item.resource or {}).get("id")
    id = found[0].id if found else (body_id or new_id())
    item.path, item.query = f"{type}/{id}", []
    if item.resource is not None:
        item.resource = {**item.resource, "id": id}
    return item.path


async def _rewrite(
    svc: FhirService, req: Request, db: StorageTx, resource: dict[str, Any], ids: dict[str, str]
) -> dict[str, Any]:
    """Replace fullUrls and conditional references with Type/id, where R4 says links are.

    One pass replaces the fullUrls and collects the conditional references in document
    order; they are then resolved in that order (the first that does not match one
    resource fails the transaction), and a second pass, only if there were any, puts
    them in."""
    conditionals: list[str] = []

    def full_urls(kind: Link, text: str) -> str:
        if kind is Link.REFERENCE and _conditional(text):
            conditionals.append(text)
            return text
        return ids.get(text, text)

    result: dict[str, Any] = edit_links(resource, full_urls)
    if not conditionals:
        return result
    resolved: dict[str, str] = {}
    for ref in conditionals:
        if ref not in resolved:
            resolved[ref] = await _resolve_reference(svc, req, db, ref)

    def references(kind: Link, text: str) -> str:
        return resolved.get(text, text) if kind is Link.REFERENCE else text

    result = edit_links(result, references)
    return result


def _conditional(ref: object) -> bool:
    """A conditional reference: `Type?criteria` (a relative URL, the type a name)."""
    if not isinstance(ref, str) or "?" not in ref:
        return False
    type = ref.split("?", 1)[0]
    return type.isalpha() and type[:1].isupper()


async def _resolve_reference(svc: FhirService, req: Request, db: StorageTx, ref: str) -> str:
    assert req.context
    type, _, criteria = ref.partition("?")
    if type not in svc.resource_types:
        raise BadRequest(f"Conditional reference '{ref}' names an unknown resource type")
    found = await svc.find(db, req.context, type, criteria)
    if len(found) != 1:
        raise PreconditionFailed(
            f"Conditional reference '{ref}' matches {len(found)} resources; it must match one"
        )
    return f"{type}/{found[0].id}"


def _sub_request(req: Request, item: Item) -> Request:
    headers = {k: v for k, v in req.headers.items() if k == "prefer"}
    for name, value in (
        ("if-none-exist", item.if_none_exist),
        ("if-match", item.if_match),
        ("if-none-match", item.if_none_match),
        ("if-modified-since", item.if_modified_since),
    ):
        if value:
            headers[name] = value
    if "prefer" not in headers:
        headers["prefer"] = "return=minimal"  # transaction responses carry no bodies by default
    method = "GET" if item.method == "HEAD" else item.method
    return req.with_(
        method=method,
        path=item.path,
        query=tuple(item.query),
        headers=headers,
        body=_body(item),
        assigned_id=item.assigned_id,
    )


def _body(item: Item) -> Any:
    """The entry's request body; a PATCH may carry a JSON Patch inside a Binary."""
    resource = item.resource
    if (
        item.method == "PATCH"
        and isinstance(resource, dict)
        and (resource.get("resourceType") == "Binary")
    ):
        try:
            return orjson.loads(base64.b64decode(resource.get("data", ""), validate=True))
        except (binascii.Error, orjson.JSONDecodeError, ValueError):
            raise BadRequest("The PATCH Binary does not hold a JSON Patch document") from None
    return resource


def _response_entry(req: Request, response: Response) -> bytes:
    parts: dict[str, Any] = {"status": _status(response.status)}
    if "Location" in response.headers:
        parts["location"] = response.headers["Location"]
    if "ETag" in response.headers:
        parts["etag"] = response.headers["ETag"]
    body = response.body if response.body else None
    if isinstance(body, bytes):
        with contextlib.suppress(orjson.JSONDecodeError):
            parts["lastModified"] = orjson.loads(body).get("meta", {}).get("lastUpdated")
    return entry(None, body, response={k: v for k, v in parts.items() if v})


def _error_entry(error: FhirError) -> bytes:
    return entry(None, None, response={"status": _status(error.status), "outcome": error.outcome()})


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _at(item: Item, error: FhirError) -> FhirError:
    """The same error, its diagnostics naming the failing entry (the whole transaction fails)."""
    where = f"Bundle.entry[{item.index}]"
    if error.diagnostics.startswith(where):
        return error
    error.issues = [
        type(issue)(
            f"{where}: {issue.diagnostics}",
            issue.code,
            issue.severity,
            issue.expression or (where,),
        )
        for issue in error.issues
    ]
    error.diagnostics = f"{where}: {error.diagnostics}"
    return error
