"""An AuthStore per engine (SQLite file, MongoDB through mongomock), a KeyRing, a server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mongomock
import pytest

from fhir_server.auth.keys import KeyRing
from fhir_server.auth.server import SmartAuthServer
from fhir_server.auth.store import AuthStore, MongoDocuments, SQLiteDocuments
from fhir_server.settings import Settings

BASE = "http://127.0.0.1:8080/fhir"


@pytest.fixture(params=["sqlite", "mongomock"])
def store(request, tmp_path) -> Iterator[AuthStore]:
    documents: Any = (
        SQLiteDocuments(tmp_path / "fhir.db.auth.db")
        if request.param == "sqlite"
        else MongoDocuments(mongomock.MongoClient()["fhir"])
    )
    auth = AuthStore(documents)
    auth.open()
    yield auth
    auth.close()


@pytest.fixture
def settings() -> Settings:
    return Settings(base_url=BASE)


@pytest.fixture
async def keys(store, settings) -> KeyRing:
    ring = KeyRing(
        store,
        key_lifetime=settings.auth_key_lifetime,
        longest_token=settings.auth_access_token_lifetime,
    )
    await ring.load()
    return ring


@pytest.fixture
def server(settings, store, keys) -> SmartAuthServer:
    return SmartAuthServer(settings, store, keys)
