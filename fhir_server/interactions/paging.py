"""Paging a search with keyset links: `self`, `first`, `next` and `previous`.

https://hl7.org/fhir/R4/http.html#paging -- "the server SHALL ensure that the paging links
are stable", i.e. a client following `next` sees each result once while data changes.
Offsets shift when a resource is created ahead of the page, so the links carry a keyset
cursor instead: `_page` is an opaque token holding the sort values and insertion order
(tiebreak) of the last (or, for `previous`, the first) resource of the page, and the next
page is "the results strictly after that key" (`SearchQuery.page`). Resources created
between two fetches appear where they sort, and none that was already there is skipped
or repeated. A token is bound to its `_sort`; `_offset` still works (applied after the
key) but the links never use it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from fhir_server.search.conditions import SearchQuery
from fhir_server.search.parse import page_token
from fhir_server.storage.base import StorageReader, StoredResource


@dataclass(frozen=True, slots=True)
class Paged:
    resources: list[StoredResource]
    keys: list[tuple[Any, ...]]
    total: int | None
    has_next: bool
    has_previous: bool


async def fetch_page(db: StorageReader, query: SearchQuery) -> Paged:
    """One page of `query`, fetching one more row to learn whether the other side goes on."""
    count = query.count
    if count == 0:
        page = await db.search(query)
        return Paged([], [], page.total, False, False)
    page = await db.search(replace(query, count=count + 1))
    resources, keys = page.resources, page.keys
    backwards = query.page is not None and query.page.before
    more = len(resources) > count
    if backwards:  # the extra row is the one before the page
        resources, keys = resources[-count:], keys[-count:]
        return Paged(resources, keys, page.total, True, more)
    has_previous = query.page is not None or query.offset > 0
    return Paged(resources[:count], keys[:count], page.total, more, has_previous)


def links(
    url: str, params: list[tuple[str, str]], query: SearchQuery, paged: Paged, current: str | None
) -> list[tuple[str, str]]:
    """self (with the `_page` of this request), first, next and previous links."""
    kept = [(k, v) for k, v in params if k not in ("_count", "_offset", "_page")]
    counted = [*kept, ("_count", str(query.count))]

    def link(extra: list[tuple[str, str]]) -> str:
        return f"{url}?{urlencode([*counted, *extra])}"

    here = [("_page", current)] if current else []
    if query.offset:
        here.append(("_offset", str(query.offset)))
    out = [("self", link(here)), ("first", link([]))]
    if paged.has_previous and paged.keys:
        out.append(("previous", link([("_page", page_token(query.sort, paged.keys[0], True))])))
    if paged.has_next and paged.keys:
        out.append(("next", link([("_page", page_token(query.sort, paged.keys[-1], False))])))
    return out
