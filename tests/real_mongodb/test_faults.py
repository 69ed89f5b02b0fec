"""Faults on a real replica set, injected with the server's `failCommand` fail point
(mongod started with `--setParameter enableTestCommands=1`, as the topology script
does), a primary stepdown during writes, and a secondary read preference.

What the engine must do (see `fhir_server/storage/mongodb/errors.py`): retry the whole
transaction on TransientTransactionError (with back-off), retry only the commit on
UnknownTransactionCommitResult, never write twice, and say "split it" for a transaction
too large; every acknowledged write survives the stepdown."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from pymongo import ReadPreference

from fhir_server.interactions.service import FhirService
from tests.real_mongodb.conftest import Cluster
from tests.support.service_calls import call, patient

pytestmark = pytest.mark.mongodb_real


async def failing(cluster: Cluster, commands: list[str], times: int, **data: Any) -> None:
    cluster.fail_points_used = True
    await cluster.fail_command({"failCommands": commands, **data}, times=times)


@pytest.mark.parametrize(
    "data",
    [
        {"errorCode": 112, "errorLabels": ["TransientTransactionError"]},  # WriteConflict
        {"errorCode": 10107, "errorLabels": ["TransientTransactionError"]},  # NotWritablePrimary
        {"errorCode": 24, "errorLabels": ["TransientTransactionError"]},  # LockTimeout
        {"closeConnection": True},
    ],
    ids=["write-conflict", "not-primary", "lock-timeout", "closed-connection"],
)
async def test_transient_errors_retry_the_transaction_once_written(
    replica_set: Cluster, data: dict[str, Any]
) -> None:
    svc = await replica_set.service()
    await failing(replica_set, ["insert"], 3, **data)
    status, made = await call(svc, "POST", "Patient", patient("t"))
    assert status == 201, made
    assert await replica_set.db["resources"].count_documents({"type": "Patient"}) == 1
    assert await replica_set.db["history"].count_documents({"type": "Patient"}) == 1


async def test_an_unknown_commit_result_is_retried_without_a_second_write(
    replica_set: Cluster,
) -> None:
    svc = await replica_set.service()
    await failing(replica_set, ["commitTransaction"], 1, closeConnection=True)
    status, made = await call(svc, "POST", "Patient", patient("u"))
    assert status == 201, made
    assert await replica_set.db["resources"].count_documents({"type": "Patient"}) == 1


async def test_a_commit_that_stays_unknown_is_a_503_and_is_not_repeated(
    replica_set: Cluster,
) -> None:
    svc = await replica_set.service()
    await failing(replica_set, ["commitTransaction"], 50, closeConnection=True)
    status, outcome = await call(svc, "POST", "Patient", patient("v"))
    assert status == 503, outcome
    await replica_set.clear_fail_points()
    assert await replica_set.db["resources"].count_documents({"type": "Patient"}) <= 1


async def test_a_lasting_failure_is_a_503_not_a_409(replica_set: Cluster) -> None:
    svc = await replica_set.service(transient_retry_seconds=1.0)
    await failing(
        replica_set, ["insert"], 10_000, errorCode=91, errorLabels=["TransientTransactionError"]
    )
    status, outcome = await call(svc, "POST", "Patient", patient("x"))
    assert status == 503, outcome


async def test_a_transaction_too_large_for_the_cache_is_a_413(replica_set: Cluster) -> None:
    svc = await replica_set.service()
    await failing(replica_set, ["insert"], 1, errorCode=313)
    status, outcome = await call(svc, "POST", "Patient", patient("y"))
    assert status == 413, outcome
    assert "split it" in outcome["issue"][0]["diagnostics"]


async def test_acknowledged_writes_survive_a_stepdown(replica_set: Cluster) -> None:
    svc = await replica_set.service(transient_retry_seconds=60.0)
    acknowledged: list[str] = []

    async def write(i: int) -> None:
        status, made = await call(svc, "POST", "Patient", patient(f"s{i}"))
        if status == 201:
            acknowledged.append(made["id"])

    writers = asyncio.gather(*(write(i) for i in range(200)))
    await asyncio.sleep(0.2)
    with contextlib.suppress(Exception):  # the primary closes our connection as it steps down
        await replica_set.admin.command("replSetStepDown", 10, secondaryCatchUpPeriodSecs=5)
    await writers
    assert len(acknowledged) == 200  # retried through the election, none lost
    reader = await replica_set.storage()
    for pid in acknowledged:
        assert await reader.read("Patient", pid) is not None


async def test_a_secondary_read_preference_still_commits_on_the_primary(
    replica_set: Cluster,
) -> None:
    client = replica_set.client(read_preference=ReadPreference.SECONDARY_PREFERRED)
    svc = FhirService(await replica_set.storage(client))
    criteria = (("identifier", "urn:mrn|r"),)
    status, made = await call(svc, "PUT", "Patient", patient("r"), query=criteria)
    assert status == 201, made
    status, again = await call(svc, "PUT", "Patient", patient("r"), query=criteria)
    assert status == 200 and again["id"] == made["id"]
