"""The assembly's CDS Hooks part: client authentication on by default, off with a warning."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any, cast

import pytest

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
