"""The `storage` fixture: every test in tests/contract runs once per storage engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.storage.base import Storage
from tests.support.engines import ENGINE_FACTORIES


@pytest.fixture(params=list(ENGINE_FACTORIES), ids=str)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """A freshly opened, empty engine, closed after the test."""
    store = await ENGINE_FACTORIES[request.param](tmp_path)
    try:
        yield store
    finally:
        await store.close()
