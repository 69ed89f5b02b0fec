"""Dynamic registration (RFC 7591) through the server's protocol, and the app-management
logic (a user's authorizations, revoking one), on both store engines, without HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from fhir_server.auth import manage
from fhir_server.auth.registration import new_registration_token
from fhir_server.auth.store import digest
from tests.unit.auth.conftest import BASE
from tests.unit.auth.test_code_flow import authorize, exchange, pkce, register

WEB_APP = {
    "client_name": "Chart review",
    "redirect_uris": ["https://app.test/cb"],
    "token_endpoint_auth_method": "client_secret_basic",
    "scope": "launch/patient openid fhirUser patient/*.rs offline_access",
}


async def post(
    server, metadata: Any, token: str | None, content_type: str = "application/json"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    status, reply, reply_headers = await server.register(body, headers, BASE)
    return status, reply, reply_headers


def test_registration_tokens_are_stored_hashed_and_expire(store) -> None:
    token = new_registration_token(store, 60)
    assert store.registration_token_ok(token)
    assert token not in str(store.documents.all("registration"))
    assert not store.registration_token_ok(token + "x")
    store.save_registration_token("old", time.time() - 1)
    assert not store.registration_token_ok("old")


async def test_a_secret_client_is_registered_and_its_secret_is_shown_once(server, store) -> None:
    status, body, headers = await post(server, WEB_APP, new_registration_token(store))
    assert status == 201, body
    assert headers["Cache-Control"] == "no-store"
    stored = store.get_client(body["client_id"])
    assert stored["kind"] == "symmetric" and stored["name"] == "Chart review"
    assert stored["secret_hash"] == digest(body["client_secret"])
    assert body["client_secret"] not in json.dumps(stored)
    assert body["client_secret_expires_at"] == 0
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]
    assert body["scope"] == WEB_APP["scope"]


async def test_a_backend_client_with_an_inline_jwks_gets_only_what_it_asked_for(
    server, store
) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    status, body, _ = await post(
        server,
        {
            "client_name": "Nightly export",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.as_dict(private=False)]},
            "grant_types": ["client_credentials"],
            "scope": "system/*.rs",
        },
        new_registration_token(store),
    )
    assert status == 201, body
    assert "client_secret" not in body and "redirect_uris" in body
    assert body["grant_types"] == ["client_credentials"]
    stored = store.get_client(body["client_id"])
    assert stored["kind"] == "asymmetric" and stored["jwks"]["keys"][0]["kid"] == "k1"


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ({**WEB_APP, "redirect_uris": ["https://app.test/cb#frag"]}, "invalid_redirect_uri"),
        ({**WEB_APP, "redirect_uris": ["https://user@app.test/cb"]}, "invalid_redirect_uri"),
        ({**WEB_APP, "redirect_uris": []}, "invalid_redirect_uri"),
        ({**WEB_APP, "redirect_uris": "https://app.test/cb"}, "invalid_client_metadata"),
        ({**WEB_APP, "token_endpoint_auth_method": "client_secret_jwt"}, "invalid_client_metadata"),
        ({**WEB_APP, "scope": ""}, "invalid_client_metadata"),
        ({**WEB_APP, "client_name": ["a"]}, "invalid_client_metadata"),
        ({**WEB_APP, "grant_types": ["password"]}, "invalid_client_metadata"),
        ({**WEB_APP, "grant_types": ["client_credentials"]}, "invalid_client_metadata"),
        ({**WEB_APP, "jwks": {"keys": []}}, "invalid_client_metadata"),
        ({**WEB_APP, "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
        (
            {
                **WEB_APP,
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [RSAKey.generate_key(2048).as_dict(private=True)]},
            },
            "invalid_client_metadata",
        ),
        (
            {
                **WEB_APP,
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]},
            },
            "invalid_client_metadata",
        ),
        (
            {
                **WEB_APP,
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [{"kty": "RSA"}]},
            },
            "invalid_client_metadata",
        ),
        (
            {
                **WEB_APP,
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": []},
                "jwks_uri": "https://app.test/jwks",
            },
            "invalid_client_metadata",
        ),
        (b"not json", "invalid_client_metadata"),
        (b"[1, 2]", "invalid_client_metadata"),
    ],
)
async def test_bad_metadata_is_refused_with_the_rfc_7591_error(
    server, store, metadata, error
) -> None:
    status, body, _ = await post(server, metadata, new_registration_token(store))
    assert (status, body["error"]) == (400, error), body
    assert store.list_clients() == []


async def test_a_body_that_is_not_json_is_refused_by_its_content_type(server, store) -> None:
    status, body, _ = await post(
        server,
        WEB_APP,
        new_registration_token(store),
        content_type="application/x-www-form-urlencoded",
    )
    assert (status, body["error"]) == (400, "invalid_client_metadata")


@pytest.mark.parametrize("token", [None, "", "not-a-token", "expired"])
async def test_registration_without_a_valid_token_is_401(server, store, token) -> None:
    store.save_registration_token("expired", time.time() - 1)
    status, body, headers = await post(server, WEB_APP, token)
    assert (status, body["error"]) == (401, "invalid_token")
    assert headers["WWW-Authenticate"].startswith('Bearer realm="register"')
    assert ('error="invalid_token"' in headers["WWW-Authenticate"]) is bool(token)
    assert store.list_clients() == []


async def test_a_user_sees_their_authorizations_and_revokes_one(server, store) -> None:
    client_id, _ = register(store)
    verifier, challenge = pkce()
    code = await authorize(server, client_id, challenge)  # approved by user u1
    _, tokens, _ = await exchange(
        server,
        {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "redirect_uri": "https://app.test/callback",
            "code_verifier": verifier,
        },
    )
    apps = await manage.authorized_apps(store, "u1")
    assert [app.name for app in apps] == ["Growth chart"]
    assert "Keep access after you close the app, until you revoke it" in [
        p.text for p in apps[0].permissions
    ]
    assert await manage.authorized_apps(store, "u2") == []
    assert await manage.revoke(store, "u2", apps[0].family) is None  # not theirs
    assert await manage.revoke(store, "u1", "unknown") is None
    assert (await manage.revoke(store, "u1", apps[0].family)).name == "Growth chart"
    assert await manage.authorized_apps(store, "u1") == []
    status, body, _ = await exchange(
        server, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert (status, body["error"]) == (400, "invalid_grant")
