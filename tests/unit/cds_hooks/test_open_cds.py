"""The assembly's CDS Hooks part: client authentication on by default, off with a warning."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest

from cds_hooks.endpoint import IN_THREAD_BYTES
from fhir_server.assembly import open_cds
from fhir_server.auth.store import AuthStore, SQLiteDocuments
from fhir_server.settings import Settings
from tests.support.cds_services import Hba1cService


@pytest.fixture
def auth(tmp_path) -> Any:
    store = AuthStore(SQLiteDocuments(tmp_path / "auth.db"))
    store.open()
    store.add_client({"id": "app", "redirect_uris": ["https://app.example.org/cb"]})
    yield cast(Any, SimpleNamespace(store=store))
    store.close()


async def test_client_authentication_is_on_by_default(auth, caplog) -> None:
    async with open_cds(Settings(), auth, [Hba1cService()]) as cds:
        assert cds.verifier is not None
        assert cds.smart_origins == {"https://app.example.org"}  # read from registered apps
        assert [s["id"] for s in cds.discovery()["services"]] == ["test-hba1c"]
    assert "CDS Hooks client authentication is OFF" not in caplog.text


async def test_off_accepts_calls_without_a_jwt_and_warns(auth, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        async with open_cds(Settings(cds_auth="off"), auth, []) as cds:
            assert cds.verifier is None
            assert await cds.authenticate(None, "http://x/cds-services") is None
    assert "CDS Hooks client authentication is OFF (FHIR_CDS_AUTH=off)" in caplog.text


class _SlowService(Hba1cService):
    """Evaluates for 0.4 s (as a service over a large prefetch does)."""

    def evaluate(self, call: Any) -> Any:
        time.sleep(0.4)
        return super().evaluate(call)


async def test_a_large_call_is_evaluated_beside_the_event_loop(auth) -> None:
    """A 27 MB call held the event loop (every other request waited) for seconds."""
    patient = {"resourceType": "Patient", "id": "p1", "text": {"div": "x" * 400_000}}
    body = orjson.dumps(
        {
            "hook": "patient-view",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {
                "patient": patient,
                "hba1c": {"resourceType": "Bundle", "type": "searchset"},
            },
        }
    )
    assert len(body) > IN_THREAD_BYTES
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async with open_cds(Settings(cds_auth="off"), auth, [_SlowService()]) as cds:
        running = asyncio.create_task(ticker())
        answer = await cds.call("test-hba1c", body, client=None, own=cast(Any, None))
        running.cancel()
    assert answer["cards"][0]["summary"] == "No HbA1c on file"
    assert ticks >= 10  # the loop went on while the service evaluated
