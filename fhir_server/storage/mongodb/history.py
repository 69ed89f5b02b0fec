"""History: the filter, sort and aggregation stages for `HistoryQuery` on `history`."""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING

from fhir_server.storage.base import HistoryQuery
from fhir_server.storage.mongodb.documents import Filter, present

HISTORY_SORT = {"last_updated": DESCENDING, "version": DESCENDING, "seq": DESCENDING}


def history_match(q: HistoryQuery, *, since: bool = True) -> Filter:
    out: Filter = present(type=q.type, id=q.id if q.type is not None else None)
    window = present(**{"$gte": q.since if since else None, "$lte": q.at})
    if window:
        out["last_updated"] = window
    return out


def history_at(q: HistoryQuery) -> list[Filter]:
    """Aggregation stages: per resource, its newest version at `q.at`, if written since
    `q.since`. (Total and page are two aggregations: one `$facet` document could pass
    the 16 MiB document limit with a page of large resources.)"""
    stages: list[Filter] = [
        {"$match": history_match(q, since=False)},
        {"$sort": {"type": ASCENDING, "id": ASCENDING, "version": DESCENDING}},
        {"$group": {"_id": {"t": "$type", "i": "$id"}, "doc": {"$first": "$$ROOT"}}},
        {"$replaceRoot": {"newRoot": "$doc"}},
    ]
    if q.since is not None:
        stages.append({"$match": {"last_updated": {"$gte": q.since}}})
    return stages
