"""Races between servers on a real cluster: two clients (two servers) on one database.

The Bundle conditional-update race, 20+ writers of one version (exactly one wins each
version: no gaps, no orphans), conditional creates with differing criteria on one
identity, lock waits and lock timeouts, a client closed in the middle of a transaction,
and two servers calling `open()` at once. Replica set and sharded cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fhir_server.errors import VersionConflict
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import StoredResource
from fhir_server.storage.mongodb import MongoStorage, TransactionConflict
from tests.real_mongodb.conftest import Cluster
from tests.support.service_calls import call, patient

pytestmark = pytest.mark.mongodb_real
NOW = "2026-01-01T00:00:00.000000Z"


def bundle(mrn: str, name: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": patient(mrn, name=[{"family": name}]),
                "request": {"method": "PUT", "url": f"Patient?identifier=urn:mrn|{mrn}"},
            }
        ],
    }


async def test_the_bundle_conditional_update_race_makes_one_patient(cluster: Cluster) -> None:
    servers = [await cluster.service() for _ in range(2)]
    for round in range(10):
        mrn = f"race-{round}"
        results = await asyncio.gather(
            *(call(svc, "POST", "", bundle(mrn, f"S{i}")) for i, svc in enumerate(servers))
        )
        assert all(status == 200 for status, _ in results), results
        _, found = await call(servers[0], "GET", "Patient", query=(("identifier", mrn),))
        assert found["total"] == 1


async def test_conditional_creates_with_different_criteria_make_one_identity(
    cluster: Cluster,
) -> None:
    servers = [await cluster.service() for _ in range(2)]
    criteria = ["identifier=urn:mrn|7", "identifier=urn:mrn|7&gender=female"]
    results = await asyncio.gather(
        *(
            call(
                svc, "POST", "Patient", patient("7", gender="female"), headers={"if_none_exist": c}
            )
            for svc, c in zip(servers, criteria, strict=True)
        )
    )
    assert sorted(status for status, _ in results) == [200, 201], results


async def test_twenty_four_writers_of_one_version_leave_no_gaps_and_no_orphans(
    cluster: Cluster,
) -> None:
    engines = [await cluster.storage() for _ in range(2)]
    svcs = [FhirService(engine) for engine in engines]
    status, made = await call(svcs[0], "POST", "Patient", patient("w"))
    assert status == 201
    pid = made["id"]

    async def writer(i: int) -> int:
        body = {
            **patient("w"),
            "id": pid,
            "gender": "male" if i % 2 else "female",
            "birthDate": f"19{i:02d}-01-01",
        }
        status, _ = await call(svcs[i % 2], "PUT", f"Patient/{pid}", body)
        return status

    statuses = await asyncio.gather(*(writer(i) for i in range(24)))
    assert set(statuses) <= {200, 409}, statuses
    current = await engines[0].read("Patient", pid)
    assert current is not None
    history = cluster.db["history"].find({"type": "Patient", "id": pid})
    versions = sorted([doc["version"] async for doc in history])
    assert versions == list(range(1, current.version + 1))  # no gaps, no orphans
    assert current.version == 1 + statuses.count(200)


async def test_storage_writers_of_one_version_exactly_one_wins(cluster: Cluster) -> None:
    engines = [await cluster.storage() for _ in range(2)]

    async def write(i: int) -> bool:
        rec = StoredResource("Basic", "b", 1, NOW, False, b'{"n":%d}' % i, "PUT")
        try:
            async with engines[i % 2].transaction() as tx:
                await tx.write(rec, (), expected_version=0)
        except VersionConflict:
            return False
        return True

    wins = await asyncio.gather(*(write(i) for i in range(20)))
    assert wins.count(True) == 1
    assert await cluster.db["history"].count_documents({"type": "Basic"}) == 1


async def test_a_lock_waits_for_its_holder_and_times_out(cluster: Cluster) -> None:
    holder = await cluster.storage()
    waiter = await cluster.storage(lock_timeout=0.5)
    async with holder.transaction() as held:
        await held.lock("k")
        with pytest.raises(TransactionConflict):
            async with waiter.transaction() as tx:
                await tx.lock("k")
    async with waiter.transaction() as tx:  # released at commit: claimed at once
        await tx.lock("k")


async def test_a_client_closed_mid_transaction_leaves_nothing(cluster: Cluster) -> None:
    client = cluster.client()
    storage = await cluster.storage(client)
    rec = StoredResource("Basic", "gone", 1, NOW, False, b"{}", "PUT")
    with pytest.raises(Exception):  # noqa: B017 (whatever the closed client raises)
        async with storage.transaction() as tx:
            await tx.write(rec, (), expected_version=0)
            await client.close()
            await tx.read("Basic", "gone")
    reader = await cluster.storage()
    assert await reader.read("Basic", "gone") is None


async def test_two_servers_opening_at_once_both_succeed(cluster: Cluster) -> None:
    engines = [MongoStorage(cluster.client()[cluster.name]) for _ in range(2)]
    await asyncio.gather(*(engine.open() for engine in engines))
    names = await cluster.db["resources"].index_information()
    assert "type_deleted_seq" in names
