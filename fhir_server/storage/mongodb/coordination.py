"""Coordination between server processes on one database: leases, counters, saved state.

Three small collections, one document per name, each change a single-document write
(atomic on its own, no transaction needed):

    leases       {_id: name, holder, expires}: taken with an upsert whose filter matches
                 only a free, expired or own lease; another holder's unexpired lease makes
                 the upsert try to insert a second `_id` and fail with a duplicate key.
    generations  {_id: name, value}: `$inc` by one.
    saved_state  {_id: key, value}: resumable jobs' checkpoints.

Expiry uses each server's wall clock: keep the machines' clocks in step (NTP), as a
lease a few seconds long needs clocks that agree to well under a second.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pymongo.errors import DuplicateKeyError

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase


class Coordination:
    """The coordination calls of `MongoStorage` on database `db`."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self._leases = db["leases"]
        self._generations = db["generations"]
        self._state = db["saved_state"]

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        now = time.time()
        mine_or_free = {"_id": name, "$or": [{"holder": holder}, {"expires": {"$lt": now}}]}
        try:
            await self._leases.update_one(
                mine_or_free, {"$set": {"holder": holder, "expires": now + seconds}}, upsert=True
            )
        except DuplicateKeyError:  # held by another, unexpired
            return False
        return True

    async def release_lease(self, name: str, holder: str) -> None:
        await self._leases.delete_one({"_id": name, "holder": holder})

    async def generation(self, name: str) -> int:
        doc = await self._generations.find_one({"_id": name})
        return int(doc["value"]) if doc else 0

    async def bump_generation(self, name: str) -> None:
        await self._generations.update_one({"_id": name}, {"$inc": {"value": 1}}, upsert=True)

    async def load_state(self, key: str) -> bytes | None:
        doc = await self._state.find_one({"_id": key})
        return bytes(doc["value"]) if doc else None

    async def save_state(self, key: str, value: bytes | None) -> None:
        if value is None:
            await self._state.delete_one({"_id": key})
        else:
            await self._state.update_one({"_id": key}, {"$set": {"value": value}}, upsert=True)

    async def state_keys(self, prefix: str) -> list[str]:
        found = self._state.find(
            {"_id": {"$gte": prefix, "$lt": prefix + "\U0010ffff"}}, {"_id": 1}
        )
        return sorted(str(doc["_id"]) for doc in await found.to_list(None))
