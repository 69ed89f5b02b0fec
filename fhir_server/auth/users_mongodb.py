"""`UserStore` on MongoDB: collections `auth_users`, `auth_login_failures` and
`auth_records` in the FHIR database (PyMongo's async API).

A user is one document (`_id` = user id, `name_key` = the lower-cased name, uniquely
indexed so two users cannot share a name whatever the case). Failure counters are updated
with one atomic `$inc` upsert. Sessions and EHR launches carry an `expires` date that a
TTL index removes; reads also check it, as the TTL monitor runs only once a minute.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from fhir_server.auth.users import User, UserError


def _date(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class MongoUserStore:
    """The `UserStore` in `database` (an `AsyncDatabase`, or a test adapter like it)."""

    def __init__(self, database: Any, *, owns_client: bool = False) -> None:
        self._db = database
        self._owns_client = owns_client
        self._users = database["auth_users"]
        self._failures = database["auth_login_failures"]
        self._records = database["auth_records"]

    @classmethod
    def from_url(cls, url: str) -> MongoUserStore:
        from pymongo import AsyncMongoClient

        client: Any = AsyncMongoClient(url)
        return cls(client.get_default_database(default="fhir"), owns_client=True)

    async def open(self) -> None:
        await self._users.create_indexes([IndexModel([("name_key", ASCENDING)], unique=True)])
        await self._records.create_indexes(
            [IndexModel([("expires", ASCENDING)], expireAfterSeconds=0)]
        )

    async def close(self) -> None:
        if self._owns_client:
            await self._db.client.close()

    # -- users ------------------------------------------------------------------------

    async def add_user(self, user: User) -> None:
        if await self._users.find_one({"name_key": user.name.lower()}) is not None:
            raise UserError(f"a user named {user.name!r} exists already")
        doc = {
            "_id": user.id,
            "name": user.name,
            "name_key": user.name.lower(),
            "role": user.role,
            "fhir_user": user.fhir_user,
            "password_hash": user.password_hash,
            "created": user.created,
        }
        try:
            await self._users.insert_one(doc)
        except DuplicateKeyError as exc:  # added meanwhile by another process
            raise UserError(f"a user named {user.name!r} exists already") from exc

    async def user_by_name(self, name: str) -> User | None:
        return _user(await self._users.find_one({"name_key": name.lower()}))

    async def user_by_id(self, user_id: str) -> User | None:
        return _user(await self._users.find_one({"_id": user_id}))

    async def list_users(self) -> list[User]:
        docs = await self._users.find({}).sort([("name_key", ASCENDING)]).to_list()
        return [u for u in map(_user, docs) if u is not None]

    async def remove_user(self, name: str) -> bool:
        result = await self._users.delete_one({"name_key": name.lower()})
        return bool(result.deleted_count)

    # -- login failures ---------------------------------------------------------------

    async def count_failure(self, key: str, now: float, window: float) -> int:
        # Restart a counter whose last failure is older than the window, then count one.
        await self._failures.update_one(
            {"_id": key, "last": {"$lt": now - window}}, {"$set": {"count": 0}}
        )
        await self._failures.update_one(
            {"_id": key}, {"$inc": {"count": 1}, "$set": {"last": now}}, upsert=True
        )
        doc = await self._failures.find_one({"_id": key})
        return int(doc["count"]) if doc else 1

    async def failures(self, key: str, now: float, window: float) -> int:
        doc = await self._failures.find_one({"_id": key, "last": {"$gte": now - window}})
        return int(doc["count"]) if doc else 0

    async def clear_failures(self, key: str) -> None:
        await self._failures.delete_one({"_id": key})

    # -- sessions and launches --------------------------------------------------------

    async def put_record(self, kind: str, key: str, data: dict[str, Any], expires: float) -> None:
        await self._records.update_one(
            {"_id": f"{kind}:{key}"},
            {"$set": {"data": data, "expires": _date(expires)}},
            upsert=True,
        )

    async def get_record(self, kind: str, key: str, now: float) -> dict[str, Any] | None:
        doc = await self._records.find_one(
            {"_id": f"{kind}:{key}", "expires": {"$gte": _date(now)}}
        )
        return dict(doc["data"]) if doc else None

    async def delete_record(self, kind: str, key: str) -> None:
        await self._records.delete_one({"_id": f"{kind}:{key}"})


def _user(doc: dict[str, Any] | None) -> User | None:
    if doc is None:
        return None
    return User(
        id=doc["_id"],
        name=doc["name"],
        role=doc["role"],
        fhir_user=doc.get("fhir_user"),
        password_hash=doc["password_hash"],
        created=float(doc["created"]),
    )
