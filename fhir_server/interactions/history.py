"""FHIR history interaction at instance, type and system level.

https://hl7.org/fhir/R4/http.html#history -- a Bundle of type history, newest first, each
entry with the version (none for a deletion), its request and response; `_since`
(versions updated at or after an instant), `_at` (versions current at a time), `_count`
and paging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.context import AccessContext, Action, restrict_search
from fhir_server.errors import BadRequest, NotFound
from fhir_server.interactions import observed
from fhir_server.interactions.bundles import bundle, history_entry, page_links
from fhir_server.interactions.request import Request, Response
from fhir_server.search.conditions import SearchQuery
from fhir_server.search.dates import parse_instant_range
from fhir_server.search.limits import whole_number
from fhir_server.storage.base import HistoryQuery

if TYPE_CHECKING:
    from fhir_server.interactions.routes import RouteMatch
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx


async def instance(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    assert m.type and m.id
    if await svc.storage.read(m.type, m.id) is None:
        raise NotFound(f"{m.type}/{m.id} is not known")
    return await _history(
        svc, req, m.type, m.id, f"{req.base}/{m.type}/{m.id}/_history", action="read"
    )


async def type_(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    assert m.type
    return await _history(svc, req, m.type, None, f"{req.base}/{m.type}/_history")


async def system(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    return await _history(svc, req, None, None, f"{req.base}/_history")


async def _history(
    svc: FhirService,
    req: Request,
    type: str | None,
    id: str | None,
    self_url: str,
    action: Action = "history",
) -> Response:
    assert req.context
    svc.policy.check(req.context, action, type)
    count = _int_param(req, "_count", svc.default_count, svc.max_count)
    offset = _int_param(req, "_offset", 0, None)
    since = _instant_param(req, "_since", low=True)
    at = _instant_param(req, "_at", low=False)
    query = HistoryQuery(type, id, since, at, count + 1, offset)
    page = await svc.storage.history(query)
    found = page.resources[:count]
    visible = [r for r in found if svc.policy.visible(req.context, r)]
    observed.note(visible)
    params = [(k, v) for k, v in req.query if k in ("_since", "_at")]
    links = page_links(self_url, params, count, offset, len(page.resources) > count)
    total = page.total if _sees_all(svc, req.context, type) else None
    body = bundle(
        "history",
        (history_entry(req.base, svc.disclosure.present(req.context, r)) for r in visible),
        total=total,
        links=links,
    )
    return Response(200, body)


def _sees_all(svc: FhirService, ctx: AccessContext, type: str | None) -> bool:
    """Whether the policy leaves the caller every resource of `type` (of every type when
    None): only then is the storage's total theirs to know."""
    probe = SearchQuery((type,) if type else ())
    return restrict_search(svc.policy, ctx, probe) == probe


def _int_param(req: Request, name: str, default: int, cap: int | None) -> int:
    raw = req.param(name)
    if raw is None:
        return default
    number = whole_number(name, raw)
    return min(number, cap) if cap is not None else number


def _instant_param(req: Request, name: str, *, low: bool) -> str | None:
    raw = req.param(name)
    if raw is None:
        return None
    bounds = parse_instant_range(raw)
    if bounds is None:
        raise BadRequest(
            f"{name}={raw} is not a FHIR date, dateTime or instant", expression=(name,)
        )
    return bounds[0] if low else bounds[1]
