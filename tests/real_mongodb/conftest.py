"""Fixtures of the real-server suite: everything here runs against a real MongoDB and skips,
with the reason, without one.

- `FHIR_TEST_MONGODB_URL`: a replica set (e.g. the three members
  `scripts/mongodb_topology.sh replica-set` starts, with test commands enabled for the
  `failCommand` fail point): mongodb://localhost:27017,localhost:27018,localhost:27019/?replicaSet=rs0
- `FHIR_TEST_MONGODB_SHARDED_URL`: a mongos of a two-shard cluster
  (`scripts/mongodb_topology.sh sharded`): mongodb://localhost:27100/

Each test gets fresh databases, dropped afterwards. Run the suite with
`make test-mongodb` (or `pytest -m mongodb_real tests/real_mongodb tests/contract`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fhir_server.interactions.service import FhirService
from fhir_server.storage.mongodb import MongoStorage
from tests.support.mongo_engines import MONGODB_URL_ENV, SHARDED_URL_ENV, shard

TOPOLOGIES = {"replica-set": MONGODB_URL_ENV, "sharded": SHARDED_URL_ENV}


def url_of(topology: str) -> str:
    env = TOPOLOGIES[topology]
    url = os.environ.get(env)
    if not url:
        pytest.skip(f"{env} not set: real-MongoDB ({topology}) test not executed")
    return url


class Cluster:
    """One database on a real server, with as many clients (servers) on it as a test wants."""

    def __init__(self, url: str, sharded: bool) -> None:
        self.url = url
        self.sharded = sharded
        self.name = f"fhir_real_{uuid.uuid4().hex[:16]}"
        self.clients: list[Any] = []

    def client(self, **options: Any) -> Any:
        from pymongo import AsyncMongoClient

        made = AsyncMongoClient(self.url, **options)
        self.clients.append(made)
        return made

    async def storage(self, client: Any | None = None, **options: Any) -> MongoStorage:
        """An opened engine on this cluster's database, through its own client by default."""
        engine = MongoStorage((client or self.client())[self.name], **options)
        await engine.open()
        return engine

    async def service(self, **options: Any) -> FhirService:
        return FhirService(await self.storage(), **options)

    @property
    def admin(self) -> Any:
        return (self.clients[0] if self.clients else self.client()).admin

    @property
    def db(self) -> Any:
        return (self.clients[0] if self.clients else self.client())[self.name]

    async def fail_command(self, data: dict[str, Any], times: int = 1) -> None:
        """Set the server's `failCommand` fail point (needs enableTestCommands=1)."""
        await self.admin.command(
            "configureFailPoint", "failCommand", mode={"times": times}, data=data
        )

    async def clear_fail_points(self) -> None:
        await self.admin.command("configureFailPoint", "failCommand", mode="off")

    async def close(self) -> None:
        if self.clients:
            try:
                if self.fail_points_used:
                    await self.clear_fail_points()
            finally:
                await self.clients[0].drop_database(self.name)
                for client in self.clients:
                    await client.close()

    fail_points_used = False


@pytest.fixture(params=list(TOPOLOGIES), ids=str)
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """A fresh database on the replica set, then on the sharded cluster (sharded as
    documented); each skips with the reason when its URL is not set."""
    url = url_of(request.param)
    made = Cluster(url, sharded=request.param == "sharded")
    if made.sharded:
        await shard(made.client(), made.name)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def replica_set() -> AsyncIterator[Cluster]:
    """A fresh database on the replica set only (fail points, stepdown, read preference)."""
    made = Cluster(url_of("replica-set"), sharded=False)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def sharded() -> AsyncIterator[Cluster]:
    made = Cluster(url_of("sharded"), sharded=True)
    await shard(made.client(), made.name)
    try:
        yield made
    finally:
        await made.close()
