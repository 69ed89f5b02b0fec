"""The bench's bearer token comes from the real CLI: a backend client registered with its
JWKS, then `auth token --client`; the token is for that client and the read scope."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import cast

from joserfc import jwt
from joserfc.jwk import KeySet, KeySetSerialization

from bench import bearer
from fhir_server.auth.keys import KeyRing
from fhir_server.auth.store import AuthStore, SQLiteDocuments


def test_the_cli_gives_the_bench_a_token_for_its_backend_client(tmp_path: Path) -> None:
    base = "http://127.0.0.1:8123/fhir"
    env = {
        **os.environ,
        "FHIR_DATABASE": str(tmp_path / "bench.db"),
        "FHIR_AUTH": "on",
        "FHIR_BASE_URL": base,
    }
    token = bearer.bearer_token(env, tmp_path)
    claims = jwt.decode(
        token, server_keys(tmp_path / "bench.db.auth.db"), algorithms=["RS256"]
    ).claims
    assert claims["scope"] == bearer.SCOPE and claims["aud"] == base
    assert claims["client_id"] != "local-admin" and claims["sub"] == claims["client_id"]


def server_keys(auth_database: Path) -> KeySet:
    """The public keys the server would verify the token with."""
    store = AuthStore(SQLiteDocuments(auth_database))
    store.open()
    try:
        ring = KeyRing(store)
        asyncio.run(ring.load())
        return KeySet.import_key_set(cast(KeySetSerialization, ring.public_jwks()))
    finally:
        store.close()
