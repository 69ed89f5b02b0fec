"""Readiness follows the storage: 503 while starting or when a read fails or hangs."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI

from fhir_server.api import ops_routes
from fhir_server.settings import Settings


class _Storage:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    async def read(self, type: str, id: str) -> Any:
        if self.behaviour == "fail":
            raise OSError("disk gone")
        if self.behaviour == "hang":
            await asyncio.sleep(60)
        return None


async def _ready(service: object | None, timeout: float = 2.0) -> httpx.Response:
    app = FastAPI()
    ops_routes.install(app, Settings())
    if service is not None:
        app.state.service = service
    ops_routes.READY_TIMEOUT, old = timeout, ops_routes.READY_TIMEOUT
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/health/ready")
    finally:
        ops_routes.READY_TIMEOUT = old


async def test_ready_once_the_storage_answers() -> None:
    assert (await _ready(SimpleNamespace(storage=_Storage("ok")))).status_code == 200


async def test_not_ready_while_starting() -> None:
    response = await _ready(None)
    assert response.status_code == 503
    assert "starting" in response.json()["issue"][0]["diagnostics"]


async def test_not_ready_when_the_storage_fails_or_hangs() -> None:
    failing = await _ready(SimpleNamespace(storage=_Storage("fail")))
    hanging = await _ready(SimpleNamespace(storage=_Storage("hang")), timeout=0.2)
    for response in (failing, hanging):
        assert response.status_code == 503
        assert response.json()["issue"][0]["diagnostics"] == "storage unreachable"
