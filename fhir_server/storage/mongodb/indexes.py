"""The indexes `MongoStorage.open()` creates (idempotent): compound multikey indexes that
lead with `type` and the parameter name, so every positive condition is an index range."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

LOCK_TTL_SECONDS = 86400


def _ix(*keys: str | tuple[str, int], **options: Any) -> IndexModel:
    spec = [k if isinstance(k, tuple) else (k, ASCENDING) for k in keys]
    name = "_".join(k if d == ASCENDING else f"{k}_desc" for k, d in spec)
    return IndexModel(spec, name=name, **options)


RESOURCE_INDEXES = [
    # Sort orders; a search of several types merges their (type, ...) ranges. `deleted`
    # second: live resources are one range, so a total without conditions and export
    # read no tombstones, and `distinct("type")` walks the leading key.
    _ix("type", "deleted", "seq"),  # insertion order: the default sort and export
    _ix("type", "deleted", "id", "seq"),
    _ix("type", "deleted", "last_updated", "seq"),
    # Descending sorts break ties by ascending insertion order: mixed directions, which
    # the ascending indexes cannot give (read backwards they give seq descending).
    _ix("type", "deleted", ("id", DESCENDING), "seq"),
    _ix("type", "deleted", ("last_updated", DESCENDING), "seq"),
    # One per kind of condition: each positive condition is a range of one of these.
    _ix("type", "tok.p", "tok.c", "tok.s"),
    _ix("type", "str.p", "str.v"),
    _ix("type", "str.p", "str.x"),
    _ix("type", "ref.p", "ref.i", "ref.t"),
    _ix("type", "ref.p", "ref.u", "ref.v"),
    _ix("type", "dt.p", "dt.lo", "dt.hi"),
    _ix("type", "dt.p", "dt.hi", "dt.lo"),  # gt/sa bound the high end
    _ix("type", "num.p", "num.lo", "num.hi"),
    _ix("type", "qty.p", "qty.c", "qty.lo", "qty.hi"),
    _ix("type", "uri.p", "uri.u"),
    _ix("type", "tok.p", "tok.t"),  # token :text
    _ix("type", "cmp.p", "cmp.c0", "cmp.s0"),  # composites, by their first component
    _ix("type", "geo.p", "geo.lat", "geo.lon"),  # near: the bounding box
]
HISTORY_INDEXES = [
    _ix("type", "id", "last_updated", "version", "seq"),
    _ix("type", "id", ("version", DESCENDING)),  # _at: each resource's newest version first
    _ix("type", "last_updated", "version", "seq"),
    _ix("last_updated", "version", "seq"),
]
LOCK_INDEXES = [_ix("claimed_at", expireAfterSeconds=LOCK_TTL_SECONDS)]
CHUNK_INDEXES: list[IndexModel] = []  # read by _id (with type and id, the shard key)
QUEUE_INDEXES = [_ix("q", "s", unique=True)]
