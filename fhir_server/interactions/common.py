"""Small helpers every interaction shares: ids, instants, ETags, headers, criteria."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fhir_server.errors import BadRequest
from fhir_server.interactions.request import Request
from fhir_server.parameters import without_http_only
from fhir_server.search.conditions import (
    Condition,
    SearchQuery,
    StringCondition,
    TokenCondition,
    TokenTextCondition,
)
from fhir_server.storage.base import StoredResource


def stamp(resource: dict[str, Any], id: str, version: int, now: str) -> dict[str, Any]:
    """The resource with its id and server-owned meta (versionId, lastUpdated), in FHIR order."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = now
    body: dict[str, Any] = {"resourceType": resource["resourceType"], "id": id, "meta": meta}
    for key, value in resource.items():
        if key not in body:
            body[key] = value
    return body


def criteria_params(criteria: str | Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Search criteria as (name, value) pairs, from a query string or already split."""
    if isinstance(criteria, str):
        return parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
    return list(criteria)


def require_filter(type: str, params: Sequence[tuple[str, str]], query: SearchQuery) -> None:
    """Refuse conditional criteria that filter nothing: they would match every resource of
    `type` (on a type with one resource, a conditional update would overwrite it).

    A clause filters when none of its alternatives is empty: `name=` and result parameters
    (`_count`, `_sort`, `_summary`, `_include`...) add no clause, and `identifier=|` (no
    system, no code) or a string that normalizes to nothing match whatever has the element."""
    if not any(all(not _empty(c) for c in clause) for clause in query.clauses):
        shown = urlencode(list(params)) or "(none)"
        raise BadRequest(
            f"The conditional criteria '{shown}' for {type} filter nothing: give at least one "
            "search parameter with a value (result parameters like _count do not filter)"
        )


def _empty(condition: Condition) -> bool:
    if isinstance(condition, TokenCondition):
        return not condition.system and condition.code is None
    if isinstance(condition, StringCondition):
        return not condition.value
    if isinstance(condition, TokenTextCondition):
        return not condition.text
    return False


def query_criteria(req: Request) -> list[tuple[str, str]]:
    """The search criteria of a conditional update, patch or delete: its query, less format."""
    return without_http_only(req.query)


def criteria_key(type: str, criteria: str | Sequence[tuple[str, str]]) -> str:
    """A stable lock key for conditional writes on the same criteria: the identity key
    when the criteria name one `identifier=system|value` (so writers whose criteria differ
    otherwise, and creates of a resource carrying that identifier, still meet)."""
    params = sorted(criteria_params(criteria))
    values = [value for name, value in params if name == "identifier"]
    if len(values) == 1 and "," not in values[0] and "\\" not in values[0]:
        system, bar, value = values[0].partition("|")
        if bar and system and value:
            return identity_key(type, system, value)
    return f"create:{type}?{urlencode(params)}"


IDENTITY_TYPES = frozenset(
    {"Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Organization"}
    | {"Encounter", "Location", "Device"}
)
"""Types whose creates claim each of their identifiers (see `identity_keys`)."""
MAX_IDENTITY_CLAIMS = 8


def identity_key(type: str, system: str, value: str) -> str:
    return f"identity:{type}|{system}|{value}"


def identity_keys(type: str, resource: dict[str, Any]) -> list[str]:
    """The claims a new resource of `type` takes: one per identifier with a system and a
    value (the first `MAX_IDENTITY_CLAIMS`), so that it and a conditional write on that
    identity never both decide that nothing matches, on two servers at once."""
    if type not in IDENTITY_TYPES:
        return []
    found = resource.get("identifier")
    idents = found if isinstance(found, list) else [found]
    keys = [
        identity_key(type, i["system"], i["value"])
        for i in idents
        if isinstance(i, dict) and isinstance(i.get("system"), str) and i.get("value")
    ]
    return sorted(set(keys))[:MAX_IDENTITY_CLAIMS]


_INSTANT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_instant(after: str | None = None) -> str:
    """Now as a stored instant; with `after` (the previous version's), at least 1 µs later,
    so one resource's versions keep their order when servers' clocks disagree."""
    now = datetime.now(UTC)
    if after is not None:
        previous = datetime.strptime(after, _INSTANT).replace(tzinfo=UTC)
        now = max(now, previous + timedelta(microseconds=1))
    return now.strftime(_INSTANT)


def new_id() -> str:
    return str(uuid.uuid4())


def parse_etag(value: str) -> int:
    raw = value.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    if not raw.isdigit():
        raise BadRequest(f"'{value}' is not a version ETag like W/\"3\"")
    return int(raw)


def etag(rec: StoredResource) -> str:
    return f'W/"{rec.version}"'


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(instant: str) -> str:
    """An HTTP date (RFC 9110 IMF-fixdate) for a stored instant `YYYY-MM-DDTHH:MM:SS...Z`
    (what `email.utils.format_datetime(..., usegmt=True)` gives, at a fraction of its cost:
    every read answers one)."""
    year, month, day = int(instant[0:4]), int(instant[5:7]), int(instant[8:10])
    weekday = _DAYS[date(year, month, day).weekday()]
    return f"{weekday}, {instant[8:10]} {_MONTHS[month - 1]} {instant[0:4]} {instant[11:19]} GMT"


def location(req: Request, rec: StoredResource) -> str:
    return f"{req.base}/{rec.type}/{rec.id}/_history/{rec.version}"


def version_headers(req: Request, rec: StoredResource) -> dict[str, str]:
    return {"ETag": etag(rec), "Last-Modified": http_date(rec.last_updated)}
