from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import ServerProcess

BODY_LIMIT = 16 * 1024 * 1024


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    database = tmp_path_factory.mktemp("e2e") / "fhir.db"
    process = ServerProcess(database, FHIR_MAX_BODY_BYTES=str(BODY_LIMIT)).start()
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
