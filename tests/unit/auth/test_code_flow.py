"""The authorize protocol, the code and refresh grants, introspection and revocation, each
override of authlib's defaults that SMART needs, on both store engines (no HTTP)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from fhir_server.auth.authorize import AuthorizeError, AuthorizeRedirectError
from fhir_server.auth.clients import new_client
from tests.unit.auth.conftest import BASE

REDIRECT = "https://app.test/callback"
SCOPES = "launch/patient openid fhirUser offline_access patient/*.rs"


def register(store, kind: str = "public") -> tuple[str, str | None]:
    doc, secret = new_client(
        name="Growth chart",
        kind=kind,
        redirect_uris=[REDIRECT],
        scopes=[*SCOPES.split(), "online_access", "launch"],
    )
    store.add_client(doc)
    return doc["id"], secret


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def params(client: str, challenge: str, **changes: str) -> dict[str, str]:
    query = {
        "response_type": "code",
        "client_id": client,
        "redirect_uri": REDIRECT,
        "scope": SCOPES,
        "state": "st-1",
        "aud": BASE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    query.update(changes)
    return {k: v for k, v in query.items() if v != ""}


async def authorize(server, client_id: str, challenge: str, **changes: str) -> str:
    req = await server.validate_authorize(params(client_id, challenge, **changes))
    url = await server.approve(
        req,
        user_id="u1",
        fhir_user="Practitioner/p1",
        role="clinician",
        scopes=req.scopes,
        context={"patient": "123", "need_patient_banner": True},
    )
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(REDIRECT) and query["state"] == ["st-1"]
    return query["code"][0]


async def exchange(
    server, form: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    status, body, reply_headers = await server.token(form, headers or {}, BASE)
    return status, body, reply_headers


def code_form(client_id: str, code: str, verifier: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": verifier,
    }


async def test_public_client_code_flow_with_pkce_gets_context_id_token_and_refresh(
    server, store, keys
) -> None:
    client_id, _ = register(store)
    verifier, challenge = pkce()
    code = await authorize(server, client_id, challenge, nonce="n-1")
    status, body, headers = await exchange(server, code_form(client_id, code, verifier))
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store" and headers["Pragma"] == "no-cache"
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == SCOPES and body["patient"] == "123"
    assert body["need_patient_banner"] is True and body["refresh_token"]
    jwks = KeySet.import_key_set(keys.public_jwks())
    claims = jwt.decode(body["access_token"], jwks, algorithms=["RS256"]).claims
    assert (claims["sub"], claims["patient"], claims["fhirUser"], claims["role"]) == (
        "u1",
        "123",
        "Practitioner/p1",
        "clinician",
    )
    id_token = jwt.decode(body["id_token"], jwks, algorithms=["RS256"])
    assert id_token.claims["aud"] == client_id and id_token.claims["nonce"] == "n-1"
    assert id_token.claims["fhirUser"] == "Practitioner/p1"


@pytest.mark.parametrize(
    "change, error",
    [
        ({"code_challenge": "", "code_challenge_method": ""}, "code_challenge is required"),
        ({"code_challenge_method": "plain"}, "must be S256"),
        ({"code_challenge_method": ""}, "must be S256"),
        ({"aud": "https://elsewhere.test/fhir"}, "aud is not the FHIR base"),
        ({"aud": ""}, "aud is required"),
        ({"scope": "launch openid patient/*.rs"}, "launch parameter"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
async def test_bad_authorize_requests_go_back_to_the_redirect_uri(
    server, store, change, error
) -> None:
    client_id, _ = register(store)
    with pytest.raises(AuthorizeRedirectError) as raised:
        await server.validate_authorize(params(client_id, pkce()[1], **change))
    assert raised.value.url.startswith(REDIRECT + "?")
    query = parse_qs(urlsplit(raised.value.url).query)
    assert query["state"] == ["st-1"]
    assert error in (query.get("error_description", [""])[0] + query["error"][0])


async def test_resource_is_a_synonym_of_aud(server, store) -> None:
    client_id, _ = register(store)
    req = await server.validate_authorize(params(client_id, pkce()[1], aud="", resource=BASE))
    assert req.aud == BASE and req.wants_patient


@pytest.mark.parametrize(
    "change",
    [
        {"client_id": "nobody"},
        {"redirect_uri": "https://app.test/other"},
        {"redirect_uri": REDIRECT + "/"},
    ],
)
async def test_unknown_clients_and_redirect_uris_get_an_error_page(server, store, change) -> None:
    client_id, _ = register(store)
    with pytest.raises(AuthorizeError):
        await server.validate_authorize(params(client_id, pkce()[1], **change))


async def test_deny_sends_access_denied_with_the_state(server, store) -> None:
    client_id, _ = register(store)
    req = await server.validate_authorize(params(client_id, pkce()[1]))
    query = parse_qs(urlsplit(server.deny(req)).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["st-1"]


async def test_pkce_verifier_is_required_and_checked(server, store) -> None:
    client_id, secret = register(store, "symmetric")  # confidential clients too
    _, challenge = pkce()
    code = await authorize(server, client_id, challenge)
    form = {**code_form(client_id, code, ""), "client_secret": secret or ""}
    del form["code_verifier"]
    status, body, _ = await exchange(server, form)
    assert (status, body["error"]) == (400, "invalid_request")
    code = await authorize(server, client_id, challenge)
    status, body, _ = await exchange(
        server, {**code_form(client_id, code, pkce()[0]), "client_secret": secret or ""}
    )
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_a_reused_code_is_refused_and_revokes_what_it_gave(server, store) -> None:
    client_id, _ = register(store)
    verifier, challenge = pkce()
    code = await authorize(server, client_id, challenge)
    status, first, _ = await exchange(server, code_form(client_id, code, verifier))
    assert status == 200
    status, body, _ = await exchange(server, code_form(client_id, code, verifier))
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body, _ = await exchange(
        server, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert (status, body["error"]) == (400, "invalid_grant")


async def _tokens(server, store, scope: str = SCOPES) -> tuple[str, dict[str, Any]]:
    client_id, _ = register(store)
    verifier, challenge = pkce()
    code = await authorize(server, client_id, challenge, scope=scope)
    status, body, _ = await exchange(server, code_form(client_id, code, verifier))
    assert status == 200, body
    return client_id, body


async def test_public_refresh_without_client_id_rotates_and_reuse_revokes_the_family(
    server, store
) -> None:
    _, first = await _tokens(server, store)
    status, second, _ = await exchange(
        server, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert status == 200, second
    assert second["refresh_token"] != first["refresh_token"] and second["patient"] == "123"
    status, body, _ = await exchange(
        server, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body, _ = await exchange(
        server, {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}
    )
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_refresh_scope_may_only_narrow(server, store) -> None:
    client_id, first = await _tokens(server, store)
    wider = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": client_id,
        "scope": SCOPES + " online_access",
    }
    status, body, _ = await exchange(server, wider)
    assert (status, body["error"]) == (400, "invalid_scope")
    narrower = {**wider, "scope": "patient/*.rs"}
    status, body, _ = await exchange(server, narrower)
    assert status == 200 and body["scope"] == "patient/*.rs" and body["refresh_token"]


async def test_no_refresh_token_without_offline_or_online_access(server, store) -> None:
    _, body = await _tokens(server, store, "launch/patient patient/*.rs")
    assert "refresh_token" not in body and "id_token" not in body


async def test_online_access_gets_a_refresh_token(server, store) -> None:
    _, body = await _tokens(server, store, "launch/patient online_access patient/*.rs")
    assert body["refresh_token"]


async def test_confidential_client_authenticates_with_basic_or_post(server, store) -> None:
    client_id, secret = register(store, "symmetric")
    for how in ("basic", "post", "wrong"):
        verifier, challenge = pkce()
        code = await authorize(server, client_id, challenge)
        form, headers = code_form(client_id, code, verifier), {}
        if how == "basic":
            raw = f"{client_id}:{secret}".encode()
            headers = {"authorization": "Basic " + base64.b64encode(raw).decode()}
            del form["client_id"]
        else:
            form["client_secret"] = (secret or "") if how == "post" else "not-it"
        status, body, _ = await exchange(server, form, headers)
        assert (status == 200) == (how != "wrong"), (how, body)
        if how == "wrong":
            assert body["error"] == "invalid_client"


async def test_introspection_needs_a_client_and_reports_smart_fields(server, store) -> None:
    _, body = await _tokens(server, store)
    resource_server, secret = register(store, "symmetric")
    auth = {"client_id": resource_server, "client_secret": secret or ""}
    status, seen, _ = await server.introspect({"token": body["access_token"], **auth}, {}, BASE)
    assert status == 200 and seen["active"] is True
    assert (seen["scope"], seen["patient"], seen["fhirUser"], seen["sub"]) == (
        SCOPES,
        "123",
        "Practitioner/p1",
        "u1",
    )
    assert seen["iss"] == "http://127.0.0.1:8080/auth" and seen["exp"] > 0
    status, seen, _ = await server.introspect({"token": "nonsense", **auth}, {}, BASE)
    assert (status, seen) == (200, {"active": False})
    status, seen, _ = await server.introspect({"token": body["access_token"]}, {}, BASE)
    assert status in (400, 401) and seen["error"] == "invalid_client"


async def test_revocation_of_access_and_refresh_tokens(server, store) -> None:
    client_id, body = await _tokens(server, store)
    resource_server, secret = register(store, "symmetric")
    auth = {"client_id": resource_server, "client_secret": secret or ""}
    status, _, _ = await server.revoke(
        {"token": body["access_token"], "client_id": client_id}, {}, BASE
    )
    assert status == 200
    _, seen, _ = await server.introspect({"token": body["access_token"], **auth}, {}, BASE)
    assert seen == {"active": False}
    status, _, _ = await server.revoke(
        {
            "token": body["refresh_token"],
            "client_id": client_id,
            "token_type_hint": "refresh_token",
        },
        {},
        BASE,
    )
    assert status == 200
    status, seen, _ = await exchange(
        server, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    )
    assert (status, seen["error"]) == (400, "invalid_grant")
    status, seen, _ = await server.revoke({"token": "unknown", "client_id": client_id}, {}, BASE)
    assert status == 200  # RFC 7009 §2.2: an invalid token is not an error
