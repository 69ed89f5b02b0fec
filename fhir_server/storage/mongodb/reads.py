"""Reads shared by the storage and its transactions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.search.conditions import SearchQuery
from fhir_server.storage.base import Page, StoredResource
from fhir_server.storage.mongodb.documents import RECORD_FIELDS, one, record
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
        doc = await self._resources.find_one(one(type, id), RECORD_FIELDS,
                                             session=self._session)
        return record(doc) if doc else None

    async def search(self, query: SearchQuery) -> Page:
        filter = search_filter(query, query.types or await self._types())
        resources: list[StoredResource] = []
        if query.count > 0:
            cursor = (self._resources.find(filter, RECORD_FIELDS, session=self._session)
                      .sort(search_sort(query)).skip(query.offset).limit(query.count))
            resources = [record(doc) for doc in await cursor.to_list(None)]
        total = None
        if query.total != "none":
            total = await self._resources.count_documents(filter, session=self._session)
        return Page(resources, total)

    async def _types(self) -> list[str]:
        """The resource types present, so a system-wide search can use the type indexes."""
        cursor = await self._resources.aggregate([{"$group": {"_id": "$type"}}],
                                                 session=self._session)
        return sorted(doc["_id"] for doc in await cursor.to_list(None))
