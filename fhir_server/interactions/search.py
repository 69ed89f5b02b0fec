"""FHIR search interaction at type and system level (GET, and POST `_search` with a form).

https://hl7.org/fhir/R4/http.html#search and https://hl7.org/fhir/R4/search.html -- the
result is a Bundle of type searchset with `self` (the parameters actually applied),
`first`/`next`/`previous` keyset links (see `paging`) and, unless `_total=none`, the
total. Unknown parameters are ignored (reported in an OperationOutcome entry) unless
`Prefer: handling=strict`, when they are a 400.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fhir_server.context import restrict_search
from fhir_server.errors import BadRequest, NotFound
from fhir_server.interactions import hierarchies, observed
from fhir_server.interactions.bundles import bundle, entry
from fhir_server.interactions.includes import MAX_INCLUDED, fetch_included
from fhir_server.interactions.paging import Paged, fetch_page
from fhir_server.interactions.paging import links as page_links
from fhir_server.interactions.request import Request, Response
from fhir_server.model import fhirjson
from fhir_server.model.summary import apply_elements, apply_summary
from fhir_server.search import compartments
from fhir_server.search.conditions import Clause, SearchQuery
from fhir_server.search.parse import NOT_SEARCH, parse_search
from fhir_server.storage.base import StoredResource

if TYPE_CHECKING:
    from fhir_server.interactions.routes import RouteMatch
    from fhir_server.interactions.service import FhirService
    from fhir_server.search.parse import ParsedSearch
    from fhir_server.storage.base import StorageReader, StorageTx


async def type_(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    assert m.type
    return await _search(svc, req, tx, (m.type,), [], f"{req.base}/{m.type}")


async def system(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    raw = ",".join(v for k, v in req.query if k == "_type")
    types = tuple(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))  # once each
    for type in types:
        if type not in svc.resource_types:
            raise NotFound(f"Unknown resource type '{type}' in _type", expression=("_type",))
    assert req.context
    for type in types:  # each type the caller names must be one it may search
        svc.policy.check(req.context, "search", type)
    fixed = [("_type", ",".join(types))] if types else []
    return await _search(svc, req, tx, types, fixed, req.base)


async def compartment(
    svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None
) -> Response:
    """`GET [base]/Patient/123/Observation` (or `/*`): the search narrowed to the members
    of the compartment. https://hl7.org/fhir/R4/http.html#vsearch"""
    assert m.type and m.id and m.target
    if m.type not in svc.registry.compartments:
        raise NotFound(
            f"{m.type} is not a compartment (those are "
            f"{', '.join(sorted(svc.registry.compartments))})"
        )
    members = compartments.member_types(svc.registry, m.type)
    if m.target == "*":
        types = members
    elif m.target not in svc.resource_types:
        raise NotFound(f"Unknown resource type '{m.target}'")
    elif m.target not in members:
        raise BadRequest(f"{m.target} resources are not in the {m.type} compartment")
    else:
        types = (m.target,)
    found = compartments.Members(svc.registry, m.type, m.id, types)

    def member(rec: StoredResource) -> bool:
        return not found.needs_check(rec.type, rec.id) or found.is_member(
            svc.indexer, fhirjson.loads(rec.data)
        )

    return await _search(
        svc, req, tx, types, [], f"{req.base}/{m.type}/{m.id}/{m.target}", found.clause, member
    )


async def _search(
    svc: FhirService,
    req: Request,
    tx: StorageTx | None,
    types: tuple[str, ...],
    fixed: list[tuple[str, str]],
    self_url: str,
    narrow: Clause = (),
    member: Callable[[StoredResource], bool] | None = None,
) -> Response:
    """The search of `types` the request asks for, and with `narrow` (a compartment's OR
    clause) in it; `member` drops matches the clause alone cannot tell apart."""
    assert req.context
    svc.policy.check(req.context, "search", types[0] if len(types) == 1 else None)
    params = [(k, v) for k, v in req.query if k not in NOT_SEARCH]
    strict = req.prefer_handling == "strict"
    parsed = parse_search(
        svc.registry,
        types,
        params,
        strict=strict,
        max_count=svc.max_count,
        default_count=svc.default_count,
        base=req.base or None,
        codes=svc.codes,
        limits=svc.search_limits,
    )
    query = await hierarchies.resolve(svc, req.context, tx or svc.storage, parsed.query)
    if narrow:
        query = replace(query, clauses=(narrow, *query.clauses))
    query = restrict_search(svc.policy, req.context, query)
    split = svc.disclosure.withheld(req.context, query)
    paged = await fetch_page(tx or svc.storage, query if split is None else _no_total(query))
    subsetted = False
    if split is not None:
        paged, subsetted = await _counted(tx or svc.storage, query, paged, split)
    links = page_links(self_url, [*fixed, *parsed.used], query, paged, req.param("_page"))
    matches = [
        r
        for r in paged.resources
        if svc.policy.visible(req.context, r) and (member is None or member(r))
    ]
    included = await fetch_included(svc, req.context, tx or svc.storage, matches, parsed.includes)
    observed.note(matches)
    observed.note(included.resources)
    present = svc.disclosure.present
    entries = [_entry(req, parsed, present(req.context, r), "match") for r in matches]
    entries.extend(
        _entry(req, parsed, present(req.context, r), "include") for r in included.resources
    )
    warnings = [
        ("not-supported", f"Search parameter '{name}' is not supported and was ignored")
        for name in parsed.ignored
    ]
    if included.truncated:
        warnings.append(
            (
                "too-costly",
                f"Only the first {MAX_INCLUDED} included resources are "
                "in this page: ask for a smaller _count to get them all",
            )
        )
    if warnings:
        entries.append(_warnings(warnings))
    tags = [SUBSETTED] if subsetted else []
    return Response(200, bundle("searchset", entries, total=paged.total, links=links, tags=tags))


SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
"""The tag of a search Bundle from which the access policy withheld some matches."""


def _no_total(query: SearchQuery) -> SearchQuery:
    return query if query.total == "none" else replace(query, total="none")


async def _counted(
    db: StorageReader, query: SearchQuery, paged: Paged, split: tuple[SearchQuery, SearchQuery]
) -> tuple[Paged, bool]:
    """`paged` with the total of `query` as (all matches) - (those the privacy rules
    withheld), and whether any was withheld."""
    unfiltered, lost = split
    withheld = (await db.search(lost)).total or 0
    if query.total != "none":
        found = (await db.search(replace(unfiltered, total=query.total))).total
        paged = replace(paged, total=None if found is None else max(found - withheld, 0))
    return paged, withheld > 0


def _entry(req: Request, parsed: ParsedSearch, rec: StoredResource, mode: str) -> bytes:
    data: bytes | dict[str, Any] = rec.data
    if parsed.summary not in (None, "false", "count") or parsed.elements:
        resource = fhirjson.loads(rec.data)
        if parsed.summary not in (None, "false", "count"):
            resource = apply_summary(resource, parsed.summary)
        if parsed.elements:
            resource = apply_elements(resource, list(parsed.elements))
        data = resource
    return entry(f"{req.base}/{rec.type}/{rec.id}", data, search={"mode": mode})


def _warnings(issues: list[tuple[str, str]]) -> bytes:
    """An OperationOutcome entry with (issue code, message) warnings."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "warning", "code": code, "diagnostics": message}
            for code, message in issues
        ],
    }
    return entry(None, outcome, search={"mode": "outcome"})
