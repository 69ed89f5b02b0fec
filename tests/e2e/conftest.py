from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import WORKERS_ENV, ServerProcess

BODY_LIMIT = 16 * 1024 * 1024


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server most end-to-end tests share: 2 worker processes (a deployment runs one per
    core), so every test of it also runs across processes; FHIR_TEST_WORKERS overrides."""
    database = tmp_path_factory.mktemp("e2e") / "fhir.db"
    workers = os.environ.get(WORKERS_ENV) or "2"
    process = ServerProcess(
        database, FHIR_MAX_BODY_BYTES=str(BODY_LIMIT), FHIR_WORKERS=workers
    ).start()
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.base, timeout=60, headers={"Accept": "application/fhir+json"}
    ) as http:
        yield http


@pytest.fixture
def base(server: ServerProcess) -> str:
    return server.base
