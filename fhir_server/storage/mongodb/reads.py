"""Reads shared by the storage and its transactions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bson

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import SearchQuery
from fhir_server.storage.base import Page, StoredResource
from fhir_server.storage.mongodb.chains import resolve
from fhir_server.storage.mongodb.chunks import Loader
from fhir_server.storage.mongodb.documents import RECORD_FIELDS, Filter, one
from fhir_server.storage.mongodb.errors import plain_reads
from fhir_server.storage.mongodb.ordering import ordering
from fhir_server.storage.mongodb.query import search_filter, search_sort

if TYPE_CHECKING:
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase


MAX_FILTER_BYTES = 8 * 1024 * 1024  # a search's filter, far below the 16 MiB command limit


def check_filter(filter: Filter) -> None:
    """Refuse a search whose filter would not fit in a command (a 400, not a driver error)."""
    if len(bson.encode(filter)) > MAX_FILTER_BYTES:
        raise BadRequest(
            "The search is too large for the database once expanded (chains, _has, :in or "
            ":below match too much); narrow it down"
        )


class Reader:
    """Reads on the collections, within `session` when there is one."""

    def __init__(self, db: AsyncDatabase[Any], session: AsyncClientSession | None) -> None:
        self._db = db
        self._session = session
        self._resources: AsyncCollection[Any] = db["resources"]
        self._history: AsyncCollection[Any] = db["history"]
        self._loader = Loader(db, session)

    async def read(self, type: str, id: str) -> StoredResource | None:
        with plain_reads(self._session is not None):
            doc = await self._resources.find_one(
                one(type, id), RECORD_FIELDS, session=self._session
            )
            return await self._loader.one(doc) if doc else None

    async def search(self, query: SearchQuery) -> Page:
        with plain_reads(self._session is not None):
            return await self._search(query)

    async def _search(self, query: SearchQuery) -> Page:
        types = query.types or await self._types()
        query = await resolve(query, types, self._find)
        filter = search_filter(query, types)
        check_filter(filter)
        resources: list[StoredResource] = []
        keys: list[tuple[Any, ...]] = []
        if query.count > 0:
            docs = await self._page(query, filter)
            resources = await self._bodies(docs)
            keys = [ordering(query).page_key(doc) for doc in docs]
        total = None
        if query.total != "none":  # an estimate is the exact count too
            total = await self._resources.count_documents(filter, session=self._session)
        return Page(resources, total, keys)

    async def _bodies(self, docs: list[dict[str, Any]]) -> list[StoredResource]:
        """The versions of the page's documents (sorted without their bodies), in order."""
        if not docs:
            return []
        keys = [doc["_id"] for doc in docs]
        types = sorted({key.split("/", 1)[0] for key in keys})
        ids = sorted({doc["id"] for doc in docs})
        # type and id too: a collection sharded on them routes the lookup to its shards
        match = {"_id": {"$in": keys}, "type": {"$in": types}, "id": {"$in": ids}}
        found = {
            doc["_id"]: doc
            async for doc in self._resources.find(match, RECORD_FIELDS, session=self._session)
        }
        return await self._loader.all(found[key] for key in keys if key in found)

    async def _page(self, query: SearchQuery, filter: Filter) -> list[dict[str, Any]]:
        """The page's documents in order, their sort keys only (no body is carried through
        a sort); a page before a key is read backwards. Sorts may spill to disk: past
        100 MB in memory, MongoDB 4.4 and 5.0 fail a sort that may not."""
        order = ordering(query)
        backwards = query.page is not None and query.page.before
        after = order.keyset(query.page) if query.page else None
        fields = {"_id": 1, "seq": 1, "sk": 1, "id": 1, "last_updated": 1}
        if not order.added:
            match = {"$and": [filter, after]} if after else filter
            cursor = (
                self._resources.find(match, fields, session=self._session)
                .sort(order.sort(backwards) or search_sort(query))
                .skip(query.offset)
                .limit(query.count)
                .allow_disk_use(True)
            )
            docs = await cursor.to_list(None)
        else:
            stages: list[dict[str, Any]] = [
                {"$match": filter},
                {"$project": fields},
                {"$addFields": order.added},
            ]
            if after:
                stages.append({"$match": after})
            stages += [
                {"$sort": dict(order.sort(backwards))},
                {"$skip": query.offset},
                {"$limit": query.count},
            ]
            aggregated = await self._resources.aggregate(
                stages, session=self._session, allowDiskUse=True
            )
            docs = await aggregated.to_list(None)
        if backwards:
            docs.reverse()
        return docs

    async def _find(
        self, filter: dict[str, Any], projection: dict[str, int], limit: int
    ) -> list[dict[str, Any]]:
        cursor = self._resources.find(filter, projection, session=self._session).limit(limit)
        return list(await cursor.to_list(None))

    async def _types(self) -> list[str]:
        """The resource types present, so a system-wide search can use the type indexes
        (`distinct` on the leading key of an index: a DISTINCT_SCAN, not a collection scan)."""
        return sorted(await self._resources.distinct("type", session=self._session))
