"""The CDS store on both engines of the auth store's documents (SQLite, MongoDB via mongomock)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import mongomock
import pytest

from cds_hooks import store as cds_store
from cds_hooks.store import CdsClient, CdsStore, public_jwks
from fhir_server.auth.store import MongoDocuments, SQLiteDocuments

JWKS = {"keys": [{"kty": "EC", "kid": "k1", "crv": "P-384", "x": "x", "y": "y"}]}


@pytest.fixture(params=["sqlite", "mongomock"])
def store(request, tmp_path) -> Iterator[CdsStore]:
    documents: Any = (
        SQLiteDocuments(tmp_path / "fhir.db.auth.db")
        if request.param == "sqlite"
        else MongoDocuments(mongomock.MongoClient()["fhir"])
    )
    documents.open()
    yield CdsStore(documents)
    documents.close()


def test_a_jti_is_accepted_once_per_client(store) -> None:
    exp = time.time() + 60
    assert store.use_jti("https://a", "j1", exp)
    assert not store.use_jti("https://a", "j1", exp)
    assert store.use_jti("https://b", "j1", exp)  # another client's jti space


def test_an_expired_jti_is_purged_and_may_come_again(store, monkeypatch) -> None:
    assert store.use_jti("https://a", "old", time.time() - 1)
    monkeypatch.setattr(cds_store, "PURGE_EVERY", 0.0)
    assert store.use_jti("https://a", "old", time.time() + 60)  # purged first


def test_clients_are_added_listed_removed_and_added_again(store) -> None:
    store.add_client(CdsClient("https://a", jwks_urls=("https://a/jwks",)))
    with pytest.raises(ValueError, match="already exists"):
        store.add_client(CdsClient("https://a", jwks=JWKS))
    assert [c.iss for c in store.clients()] == ["https://a"]
    assert store.remove_client("https://a")
    assert store.client("https://a") is None and not store.remove_client("https://a")
    store.add_client(CdsClient("https://a", jwks=JWKS))
    client = store.client("https://a")
    assert client is not None and client.jwks == JWKS and client.jwks_urls == ()


def test_feedback_is_queried_by_service_and_outcome(store) -> None:
    store.add_feedback("s1", "https://a", [{"card": "c1", "outcome": "accepted"}])
    store.add_feedback("s1", "https://a", [{"card": "c2", "outcome": "overridden"}])
    store.add_feedback("s2", None, [{"card": "c3", "outcome": "overridden"}])
    assert [f["card"] for f in store.feedback("s1")] == ["c1", "c2"]
    assert [f["card"] for f in store.feedback("s1", "overridden")] == ["c2"]
    assert [f["card"] for f in store.feedback(outcome="overridden")] == ["c2", "c3"]
    assert len(store.feedback()) == 3


@pytest.mark.parametrize(
    ("jwks", "why"),
    [
        ({"keys": []}, "non-empty"),
        ({"keys": [{"kty": "oct", "kid": "a", "k": "c2VjcmV0"}]}, "EC or RSA"),
        ({"keys": [{**JWKS["keys"][0], "d": "private"}]}, "private key material"),
        ({"keys": [{"kty": "EC", "crv": "P-384", "x": "x", "y": "y"}]}, "kid"),
    ],
)
def test_only_public_ec_and_rsa_keys_with_a_kid_are_registered(jwks, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        public_jwks(jwks)
