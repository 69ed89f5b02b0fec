"""Reads shared by the storage and its transactions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.search.conditions import SearchQuery
from fhir_server.storage.base import Page, StoredResource
from fhir_server.storage.mongodb.chains import resolve
from fhir_server.storage.mongodb.documents import RECORD_FIELDS, Filter, one, record
from fhir_server.storage.mongodb.ordering import ordering
from fhir_server.storage.mongodb.query import search_filter, search_sort

if TYPE_CHECKING:
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase


class Reader:
    """Reads on the three collections, within `session` when there is one."""

    def __init__(self, db: AsyncDatabase[Any], session: AsyncClientSession | None) -> None:
        self._db = db
        self._session = session
        self._resources: AsyncCollection[Any] = db["resources"]
        self._history: AsyncCollection[Any] = db["history"]

    async def read(self, type: str, id: str) -> StoredResource | None:
        doc = await self._resources.find_one(one(type, id), RECORD_FIELDS, session=self._session)
        return record(doc) if doc else None

    async def search(self, query: SearchQuery) -> Page:
        types = query.types or await self._types()
        query = await resolve(query, types, self._find)
        filter = search_filter(query, types)
        resources: list[StoredResource] = []
        keys: list[tuple[Any, ...]] = []
        if query.count > 0:
            docs = await self._page(query, filter)
            resources = [record(doc) for doc in docs]
            keys = [ordering(query).page_key(doc) for doc in docs]
        total = None
        if query.total != "none":  # an estimate is the exact count too
            total = await self._resources.count_documents(filter, session=self._session)
        return Page(resources, total, keys)

    async def _page(self, query: SearchQuery, filter: Filter) -> list[dict[str, Any]]:
        """The page's documents in order; a page before a key is read backwards."""
        order = ordering(query)
        backwards = query.page is not None and query.page.before
        after = order.keyset(query.page) if query.page else None
        fields = {**RECORD_FIELDS, "seq": 1, "sk": 1}
        if not order.added:
            match = {"$and": [filter, after]} if after else filter
            cursor = (
                self._resources.find(match, fields, session=self._session)
                .sort(order.sort(backwards) or search_sort(query))
                .skip(query.offset)
                .limit(query.count)
            )
            docs = await cursor.to_list(None)
        else:
            stages: list[dict[str, Any]] = [{"$match": filter}, {"$addFields": order.added}]
            if after:
                stages.append({"$match": after})
            stages += [
                {"$sort": dict(order.sort(backwards))},
                {"$skip": query.offset},
                {"$limit": query.count},
                {"$project": fields},
            ]
            aggregated = await self._resources.aggregate(stages, session=self._session)
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
        """The resource types present, so a system-wide search can use the type indexes."""
        cursor = await self._resources.aggregate(
            [{"$group": {"_id": "$type"}}], session=self._session
        )
        return sorted(doc["_id"] for doc in await cursor.to_list(None))
