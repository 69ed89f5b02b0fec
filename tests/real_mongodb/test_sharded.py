"""A two-shard cluster (through a mongos at FHIR_TEST_MONGODB_SHARDED_URL), with the
collections sharded on the documented keys and placed so that a resource's pieces sit on
different shards (current versions on one shard, history and chunks on the other): every
write is then a distributed transaction. Writes, conditional races and reads still hold,
and a read-after-write loop sees every acknowledged write while commits run and a chunk
migrates. (The contract suites run here too: the "mongodb-sharded" engine.)"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tests.real_mongodb.conftest import Cluster
from tests.support.service_calls import call, patient

pytestmark = pytest.mark.mongodb_real


async def shard_names(cluster: Cluster) -> list[str]:
    found = await cluster.admin.command("listShards")
    names = sorted(s["_id"] for s in found["shards"])
    if len(names) < 2:
        pytest.skip("the sharded cluster has fewer than two shards")
    return names


async def chunks_of(cluster: Cluster, collection: str) -> list[dict[str, Any]]:
    config = cluster.clients[0]["config"]
    meta = await config["collections"].find_one({"_id": f"{cluster.name}.{collection}"})
    assert meta is not None, f"{collection} is not sharded"
    return [chunk async for chunk in config["chunks"].find({"uuid": meta["uuid"]})]


async def place(cluster: Cluster, collection: str, shard: str) -> None:
    """Move every chunk of `collection` to `shard`."""
    for chunk in await chunks_of(cluster, collection):
        if chunk["shard"] != shard:
            await cluster.admin.command(
                "moveChunk",
                f"{cluster.name}.{collection}",
                bounds=[chunk["min"], chunk["max"]],
                to=shard,
            )


async def split_apart(cluster: Cluster) -> tuple[str, str]:
    first, second = (await shard_names(cluster))[:2]
    await cluster.storage()  # collections and indexes exist
    await place(cluster, "resources", first)
    for name in ("history", "chunks", "locks"):
        await place(cluster, name, second)
    return first, second


async def test_writes_across_shards_are_all_or_nothing_and_readable(sharded: Cluster) -> None:
    await split_apart(sharded)
    svc = await sharded.service()
    status, made = await call(svc, "POST", "Patient", patient("a"))
    assert status == 201, made
    status, _ = await call(svc, "GET", f"Patient/{made['id']}")
    assert status == 200
    status, history = await call(svc, "GET", f"Patient/{made['id']}/_history")
    assert history["total"] == 1


async def test_the_bundle_race_makes_one_patient_across_shards(sharded: Cluster) -> None:
    await split_apart(sharded)
    servers = [await sharded.service() for _ in range(2)]
    body = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": patient("z"),
                "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|z"},
            }
        ],
    }
    results = await asyncio.gather(*(call(svc, "POST", "", body) for svc in servers))
    assert [s for s, _ in results] == [200, 200], results
    _, found = await call(servers[0], "GET", "Patient", query=(("identifier", "z"),))
    assert found["total"] == 1


async def test_read_after_write_holds_during_commits_and_a_migration(sharded: Cluster) -> None:
    first, second = await split_apart(sharded)
    writer, reader = await sharded.service(), await sharded.service()
    stop = asyncio.Event()

    async def migrate() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while not stop.is_set():
                for target in (second, first):
                    await place(sharded, "resources", target)

    mover = asyncio.create_task(migrate())
    try:
        for i in range(100):
            status, made = await call(writer, "POST", "Patient", patient(f"m{i}"))
            assert status == 201, made
            status, read = await call(reader, "GET", f"Patient/{made['id']}")
            assert status == 200, (i, read)
    finally:
        stop.set()
        await mover
