"""Outbox queues on one database: entries written inside resource transactions.

    queue_heads    {_id: queue, last}: the queue's last sequence number.
    queue_entries  {q: queue, s: seq, payload}: read by a range of the unique (q, s) index.

`enqueue` increments the queue's head document inside the caller's transaction and
inserts the entry under the new number. Two transactions appending to one queue both
write its head document, so the second meets a write conflict and is retried by the
service (as any lost race): numbers are handed out in commit order, without gaps, and an
aborted transaction leaves neither its number nor its entry behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.database import AsyncDatabase


async def enqueue(
    db: AsyncDatabase[Any], session: AsyncClientSession, queue: str, payload: bytes
) -> int:
    heads = db["queue_heads"]
    await heads.update_one({"_id": queue}, {"$inc": {"last": 1}}, upsert=True, session=session)
    head = await heads.find_one({"_id": queue}, session=session)
    assert head is not None  # written just above, in this transaction
    seq = int(head["last"])
    await db["queue_entries"].insert_one(
        {"q": queue, "s": seq, "payload": payload}, session=session
    )
    return seq


class Queues:
    """The outbox calls of `MongoStorage` outside transactions."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self._heads = db["queue_heads"]
        self._entries = db["queue_entries"]

    async def queue_heads(self, prefix: str) -> dict[str, int]:
        found = self._heads.find({"_id": {"$gte": prefix, "$lt": prefix + "\U0010ffff"}})
        return {str(d["_id"]): int(d["last"]) for d in await found.to_list(None)}

    async def queue_entries(
        self, queue: str, after: int, *, until: int | None = None, limit: int = 100
    ) -> list[tuple[int, bytes]]:
        last = until if until is not None else 2**62
        match = {"q": queue, "s": {"$gt": after, "$lte": last}}
        found = self._entries.find(match).sort([("s", 1)]).limit(limit)
        return [(int(d["s"]), bytes(d["payload"])) for d in await found.to_list(None)]

    async def queue_trim(self, queue: str, upto: int) -> None:
        await self._entries.delete_many({"q": queue, "s": {"$lte": upto}})

    async def queue_drop(self, queue: str) -> None:
        await self._entries.delete_many({"q": queue})
        await self._heads.delete_one({"_id": queue})
