"""The stand-in's limits and fault injection behave as the server and PyMongo do: the
error classes, codes and labels the engine's handling is written against."""

from __future__ import annotations

import asyncio

import pytest
from pymongo.errors import AutoReconnect, DocumentTooLarge, OperationFailure

from tests.support.mongomock_async import MockClient
from tests.support.mongomock_limits import FailCommand


@pytest.fixture
def client() -> MockClient:
    return MockClient()


async def test_a_document_over_16_mib_is_refused_like_pymongo(client: MockClient) -> None:
    coll = client.get_database("d")["c"]
    with pytest.raises(DocumentTooLarge):
        await coll.insert_one({"_id": 1, "data": b"x" * (16 * 1024 * 1024)})
    await coll.insert_one({"_id": 2, "data": b"x" * (16 * 1024 * 1024 - 100)})
    with pytest.raises(DocumentTooLarge, match="command document too large"):
        await coll.find_one({"_id": {"$in": ["k" * 1000] * 17_000}})
    with pytest.raises(OperationFailure) as raised:  # the update's result is too large
        await coll.update_one({"_id": 2}, {"$set": {"more": b"y" * 1000}})
    assert raised.value.code == 17419
    kept = await coll.find_one({"_id": 2})
    assert kept is not None and len(kept["data"]) == 16 * 1024 * 1024 - 100  # unchanged


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("a\0b", "embedded null byte"), ("x" * 40_000, "too long")],
)
async def test_regexes_the_server_refuses_fail_with_bad_value(
    client: MockClient, pattern: str, message: str
) -> None:
    coll = client.get_database("d")["c"]
    with pytest.raises(OperationFailure, match=message) as raised:
        await coll.find({"v": {"$regex": pattern}}).to_list(None)
    assert raised.value.code == 2


async def test_a_sort_past_the_memory_limit_needs_allow_disk_use(client: MockClient) -> None:
    client.limits.sort_memory_bytes = 10_000
    coll = client.get_database("d")["c"]
    for i in range(20):
        await coll.insert_one({"_id": i, "pad": "x" * 1000})
    with pytest.raises(OperationFailure) as raised:
        await coll.find({}).sort([("pad", 1)]).to_list(None)
    assert raised.value.code == 292
    assert len(await coll.find({}).sort([("pad", 1)]).allow_disk_use(True).to_list(None)) == 20
    with pytest.raises(OperationFailure):
        await coll.aggregate([{"$sort": {"pad": 1}}])
    spilled = await coll.aggregate([{"$sort": {"pad": 1}}], allowDiskUse=True)
    assert len(await spilled.to_list()) == 20


async def test_a_transaction_past_its_lifetime_is_aborted(client: MockClient) -> None:
    client.limits.transaction_lifetime_s = 0.05
    coll = client.get_database("d")["c"]
    async with client.start_session() as session:
        await session.start_transaction()
        await coll.insert_one({"_id": 1}, session=session)
        await asyncio.sleep(0.1)
        with pytest.raises(OperationFailure) as raised:
            await coll.find_one({"_id": 1}, session=session)
    assert raised.value.code == 251
    assert raised.value.has_error_label("TransientTransactionError")
    assert await coll.find_one({"_id": 1}) is None


async def test_fail_points_fail_the_named_commands_the_given_times(client: MockClient) -> None:
    coll = client.get_database("d")["c"]
    client.fail_points.add(FailCommand(["insert"], code=91, labels=["TransientTransactionError"]))
    with pytest.raises(OperationFailure) as raised:
        await coll.insert_one({"_id": 1})
    assert raised.value.code == 91 and raised.value.has_error_label("TransientTransactionError")
    await coll.insert_one({"_id": 1})  # times=1: the next one passes
    client.fail_points.add(FailCommand(["commitTransaction"], close_connection=True))
    async with client.start_session() as session:
        await session.start_transaction(max_commit_time_ms=5)
        await coll.insert_one({"_id": 2}, session=session)
        with pytest.raises(AutoReconnect) as closed:
            await session.commit_transaction()
        assert closed.value.has_error_label("UnknownTransactionCommitResult")
        await session.commit_transaction()  # the commit alone is retried
    assert await coll.find_one({"_id": 2}) == {"_id": 2}
    assert client.transaction_options == [{"max_commit_time_ms": 5}]
