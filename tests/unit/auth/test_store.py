"""The AuthStore on both engines: single-use codes, refresh families, jti stores."""

from __future__ import annotations

import time

from fhir_server.auth.clients import new_client


def test_clients_are_added_listed_and_removed(store) -> None:
    doc, secret = new_client(
        name="app", kind="symmetric", redirect_uris=["https://a/cb"], scopes=["patient/*.rs"]
    )
    store.add_client(doc)
    assert secret and secret not in str(store.get_client(doc["id"]))  # stored hashed
    assert [c["id"] for c in store.list_clients()] == [doc["id"]]
    assert store.remove_client(doc["id"]) is True
    assert store.get_client(doc["id"]) is None and store.list_clients() == []
    assert store.remove_client(doc["id"]) is False


def test_a_code_is_used_once_and_reuse_is_reported(store) -> None:
    store.save_code("the-code", {"client_id": "c", "expires": time.time() + 60})
    first, reused = store.consume_code("the-code")
    assert first is not None and first["client_id"] == "c" and not reused
    again, reused = store.consume_code("the-code")
    assert again is not None and reused
    assert store.consume_code("other") == (None, False)


def test_an_expired_code_is_refused(store) -> None:
    store.save_code("old", {"client_id": "c", "expires": time.time() - 1})
    assert store.consume_code("old") == (None, False)


def _refresh(store, token: str, family: str = "f1") -> None:
    store.save_refresh(
        token,
        {
            "family": family,
            "client_id": "c",
            "scope": "offline_access",
            "grantee": {},
            "expires": time.time() + 600,
        },
    )


def test_a_reused_refresh_token_revokes_its_family_and_its_access_tokens(store) -> None:
    store.new_family("f1", "c", time.time() + 600)
    store.family_issued("f1", "jti-1", time.time() + 300, time.time() + 600)
    _refresh(store, "r1")
    assert store.consume_refresh("r1") is not None
    _refresh(store, "r2")  # the rotated token
    assert store.consume_refresh("r1") is None  # reuse of the old one
    assert store.find_refresh("r2") is None  # the whole family is revoked
    assert store.is_revoked("jti-1")


def test_a_refresh_token_is_not_stored_in_clear(store) -> None:
    store.new_family("f1", "c", time.time() + 600)
    _refresh(store, "secret-refresh-token")
    docs = store.documents.all("refresh")
    assert docs and "secret-refresh-token" not in str(docs)
    assert store.find_refresh("secret-refresh-token")["family"] == "f1"


async def test_revoked_jtis_since_lists_recent_unexpired_revocations(store) -> None:
    before = time.time()
    store.revoke_jti("a", time.time() + 60)
    store.revoke_jti("gone", time.time() - 1)
    assert await store.revoked_jtis_since(before) == ["a"]
    assert await store.revoked_jtis_since(time.time() + 10) == []


def test_an_assertion_jti_is_accepted_once_per_client(store) -> None:
    exp = time.time() + 60
    assert store.use_assertion("c1", "j", exp) is True
    assert store.use_assertion("c1", "j", exp) is False
    assert store.use_assertion("c2", "j", exp) is True
