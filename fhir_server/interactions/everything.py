"""`Patient/[id]/$everything` and `Patient/$everything` (also on Encounter).

https://hl7.org/fhir/R4/patient-operation-everything.html -- the patient, every resource in
its compartment (https://hl7.org/fhir/R4/compartmentdefinition-patient.html) and the
resources those reference (practitioners, organizations, medications...), as a searchset
Bundle. `_since` keeps the compartment resources changed since an instant, `_type` the
types wanted (the patient itself always comes first), `_count` the page size.

The compartment is one search over its member types (an OR of the membership parameters,
index seeks on both engines); the referenced resources are fetched by `_id`, one search
per type. Results are ordered patient first, then by type and id, and paged with a keyset
cursor (`_page`): a resource created between two pages appears where it sorts and none is
repeated or skipped. The type-level form walks the patients in storage order, one
patient's resources after the other's. All of it goes through the access policy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fhir_server.context import AccessContext, restrict_search
from fhir_server.errors import BadRequest, Forbidden, Issue
from fhir_server.interactions import observed
from fhir_server.interactions.bundles import bundle, entry
from fhir_server.interactions.operations import Operation, OperationCall
from fhir_server.model import fhirjson
from fhir_server.parameters import bad_token, decode_token, encode_token, is_key
from fhir_server.search import compartments
from fhir_server.search.conditions import (
    Clause,
    IdCondition,
    LastUpdatedCondition,
    PageKey,
    SearchQuery,
)
from fhir_server.search.dates import parse_instant_range
from fhir_server.storage.base import StoredResource

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
COMPARTMENTS = ("Patient", "Encounter")
MAX_RESOURCES = 10_000  # in one compartment; beyond, the caller narrows with _type/_since
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_REFERENCE_MEMBER = re.compile(rb'"reference"\s*:\s*"([^"\\]*)"')  # escaped ones: not Type/id
_UNSUPPORTED = ("start", "end")

Key = tuple[int, str, str]  # (0 for the focal resource else 1, type, id): the result order


@dataclass(frozen=True, slots=True)
class Item:
    key: Key
    rec: StoredResource
    mode: str  # "match": in the compartment; "include": referenced from it


@dataclass(frozen=True, slots=True)
class Options:
    types: frozenset[str] | None  # _type
    since: tuple[str, str] | None  # _since, as an instant range
    count: int


def everything_operation() -> Operation:
    return Operation(
        "everything",
        _run,
        frozenset({"type", "instance"}),
        frozenset(COMPARTMENTS),
        DEFINITION,
        access="data",
    )


async def _run(svc: FhirService, call: OperationCall) -> bytes:
    assert call.type
    options = _options(svc, call)
    cursor = _decode(call.params.string("_page"))
    if call.id is not None:
        return await _instance(svc, call, call.type, call.id, options, cursor)
    return await _type_level(svc, call, call.type, options, cursor)


async def _instance(
    svc: FhirService,
    call: OperationCall,
    type: str,
    id: str,
    options: Options,
    cursor: dict[str, Any] | None,
) -> bytes:
    focal = await svc.current(call.context, type, id)
    items = await _everything(svc, call.context, focal, options, call.base)
    after = cursor.get("a") if cursor else None
    start = 0 if after is None else sum(1 for i in items if i.key <= _key_of(after, focal))
    page = items[start : start + options.count]
    links = _links(
        call,
        options,
        page,
        start + options.count < len(items),
        previous=_previous(items, start, options.count) if start else None,
    )
    return _bundle(svc, call, page, links, total=len(items))


async def _type_level(
    svc: FhirService,
    call: OperationCall,
    type: str,
    options: Options,
    cursor: dict[str, Any] | None,
) -> bytes:
    svc.policy.check(call.context, "search", type)
    page: list[Item] = []
    owners: list[tuple[Any, str]] = []  # (storage key, id) of the focal resource of each item
    key: Any = None
    after: str | None = None
    if cursor is not None:
        key, after = cursor.get("k"), cursor.get("a")
        current = await svc.storage.read(type, str(cursor.get("p")))
        if (
            current is not None
            and not current.deleted
            and svc.policy.visible(call.context, current)
        ):
            items = await _everything(svc, call.context, current, options, call.base)
            rest = [i for i in items if after is None or i.key > _key_of(after, current)]
            page.extend(rest)
            owners.extend((key, current.id) for _ in rest)
    while len(page) <= options.count:
        query = SearchQuery(
            (type,), count=1, total="none", page=PageKey(tuple(key)) if key is not None else None
        )
        found = await svc.storage.search(restrict_search(svc.policy, call.context, query))
        if not found.resources:
            break
        key = found.keys[0]
        focal = found.resources[0]
        if not svc.policy.visible(call.context, focal):
            continue
        items = await _everything(svc, call.context, focal, options, call.base)
        page.extend(items)
        owners.extend((key, focal.id) for _ in items)
    more = len(page) > options.count
    page, owners = page[: options.count], owners[: options.count]
    links = _links(call, options, page, more, previous=None, owner=owners[-1] if owners else None)
    return _bundle(svc, call, page, links, total=None)


async def _everything(
    svc: FhirService, ctx: AccessContext, focal: StoredResource, options: Options, base: str
) -> list[Item]:
    """The focal resource, its compartment and what that references, in result order."""
    registry, compartment, id = svc.registry, focal.type, focal.id
    types = compartments.member_types(registry, compartment)
    if options.types is not None:
        types = tuple(t for t in types if t in options.types)
    found: dict[tuple[str, str], Item] = {
        (focal.type, focal.id): Item((0, focal.type, focal.id), focal, "match")
    }
    holding: list[bytes] = [focal.data]  # what to look for references in
    if types:
        members = compartments.Members(registry, compartment, id, types)
        clauses: list[Clause] = [members.clause]
        if options.since is not None:
            clauses.append((LastUpdatedCondition("ge", *options.since),))
        query = SearchQuery(types, tuple(clauses), count=MAX_RESOURCES + 1, total="none")
        page = await svc.storage.search(restrict_search(svc.policy, ctx, query))
        if len(page.resources) > MAX_RESOURCES:
            message = (
                f"{compartment}/{id} has more than {MAX_RESOURCES} resources: ask for "
                "fewer with _type or _since"
            )
            raise BadRequest(message, issues=[Issue(message, "too-costly")])
        for rec in page.resources:
            if (rec.type, rec.id) in found or not svc.policy.visible(ctx, rec):
                continue
            if members.needs_check(rec.type, rec.id) and not members.is_member(
                svc.indexer, fhirjson.loads(rec.data)
            ):
                continue
            found[(rec.type, rec.id)] = Item((1, rec.type, rec.id), rec, "match")
            holding.append(rec.data)
    wanted: dict[str, set[str]] = {}
    for data in holding:
        for type, ref_id in _references(data, base):
            if (
                (type, ref_id) not in found
                and type in svc.resource_types
                and (options.types is None or type in options.types)
            ):
                wanted.setdefault(type, set()).add(ref_id)
    for type, ids in sorted(wanted.items()):
        for rec in await _by_id(svc, ctx, type, sorted(ids)):
            found.setdefault((rec.type, rec.id), Item((1, rec.type, rec.id), rec, "include"))
    return sorted(found.values(), key=lambda item: item.key)


async def _by_id(
    svc: FhirService, ctx: AccessContext, type: str, ids: list[str]
) -> list[StoredResource]:
    try:
        svc.policy.check(ctx, "search", type)
    except Forbidden:
        return []
    query = SearchQuery((type,), ((IdCondition(tuple(ids)),),), count=len(ids), total="none")
    page = await svc.storage.search(restrict_search(svc.policy, ctx, query))
    return [r for r in page.resources if svc.policy.visible(ctx, r)]


def _references(data: bytes, base: str | None) -> Iterator[tuple[str, str]]:
    """Every literal `Type/id` reference in a stored resource's JSON (relative, or absolute
    under `base`), read from the bytes: every `"reference": "..."` member, wherever it is."""
    for found in _REFERENCE_MEMBER.finditer(data):
        text = found.group(1).decode("utf-8", "replace")
        text = text.removeprefix(f"{base}/") if base else text
        match = _REFERENCE.match(text)
        if match:
            yield match.group(1), match.group(2)


def _options(svc: FhirService, call: OperationCall) -> Options:
    for name in _UNSUPPORTED:
        if call.params.value(name) is not None:
            raise BadRequest(
                f"$everything does not support '{name}' yet: use _since and _type",
                expression=(name,),
            )
    # an empty `_type` (`_type=`, `_type=,,`) is ignored, as an empty parameter is in searches
    named = frozenset(t.strip() for v in call.params.strings("_type") for t in v.split(","))
    types = (named - {""}) or None
    if types:
        unknown = sorted(types - svc.resource_types)
        if unknown:
            raise BadRequest(
                f"Unknown resource type(s) in _type: {', '.join(unknown)}", expression=("_type",)
            )
    since = None
    text = call.params.string("_since")
    if text is not None:
        since = parse_instant_range(text)
        if since is None:
            raise BadRequest(
                f"_since must be an instant (yyyy-mm-ddThh:mm:ss+zz:zz), not '{text}'",
                expression=("_since",),
            )
    count = call.params.integer("_count")
    count = svc.default_count if count is None else min(count, svc.max_count)
    if count == 0:
        raise BadRequest("_count must be at least 1 for $everything", expression=("_count",))
    return Options(types, since, count)


def _ref(item: Item) -> str:
    return f"{item.rec.type}/{item.rec.id}"


def _key_of(ref: str, focal: StoredResource) -> Key:
    type, _, id = ref.partition("/")
    return (0 if (type, id) == (focal.type, focal.id) else 1, type, id)


def _previous(items: list[Item], start: int, count: int) -> str | None:
    """The `after` cursor of the page before the one starting at `start` ("" for the first)."""
    begin = max(0, start - count)
    return "" if begin == 0 else _ref(items[begin - 1])


def _decode(token: str | None) -> dict[str, Any] | None:
    """The cursor of a `_page` token: `a` the last item's Type/id, and at type level `k` and
    `p`, the storage key and id of the patient that item belongs to."""
    if token is None:
        return None
    data = decode_token(token)
    key = data.get("k")
    if (
        not isinstance(data.get("a"), str | None)
        or not isinstance(data.get("p"), str | None)
        or not (key is None or is_key(key))
    ):
        raise bad_token()
    return data


def _links(
    call: OperationCall,
    options: Options,
    page: list[Item],
    more: bool,
    previous: str | None,
    owner: tuple[Any, str] | None = None,
) -> list[tuple[str, str]]:
    where = f"{call.type}/{call.id}" if call.id else f"{call.type}"
    fixed: list[tuple[str, str]] = []
    if options.types is not None:
        fixed.append(("_type", ",".join(sorted(options.types))))
    if options.since is not None:
        fixed.append(("_since", str(call.params.string("_since"))))
    fixed.append(("_count", str(options.count)))

    def link(token: dict[str, Any] | None) -> str:
        extra = [("_page", encode_token(token))] if token else []
        return f"{call.base}/{where}/$everything?{urlencode([*fixed, *extra])}"

    current = call.params.string("_page")
    out = [("self", link(_decode(current))), ("first", link(None))]
    if previous is not None:
        out.append(("previous", link({"a": previous} if previous else None)))
    if more and page:
        token: dict[str, Any] = {"a": _ref(page[-1])}
        if owner is not None:
            token.update(k=owner[0], p=owner[1])
        out.append(("next", link(token)))
    return out


def _bundle(
    svc: FhirService,
    call: OperationCall,
    page: list[Item],
    links: list[tuple[str, str]],
    total: int | None,
) -> bytes:
    observed.note(item.rec for item in page)
    present = svc.disclosure.present
    entries = [
        entry(
            f"{call.base}/{item.rec.type}/{item.rec.id}",
            present(call.context, item.rec).data,
            search={"mode": item.mode},
        )
        for item in page
    ]
    return bundle("searchset", entries, total=total, links=links)
