"""SMART Backend Services and discovery over real HTTP against a real server process.

A backend client signs RS384 and ES384 assertions with keys it generates (registered with
`fhir-server auth client add`, inline and by JWKS URL served by a local HTTP server), gets
system tokens, and every forged or stale assertion is refused with `invalid_client`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from tests.support.server import ServerProcess, free_port

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class JwksServer:
    """A local HTTP server publishing JWK sets at paths the test chooses."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        documents = self.documents

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(documents.get(self.path, {})).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.http = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}{path}"


def cli(database: Path, *args: str) -> str:
    command = [str(Path(sys.executable).parent / "fhir-server"), *args]
    done = subprocess.run(
        command,
        env={"FHIR_DATABASE": str(database), "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa": RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}),
        "ec": ECKey.generate_key("P-384", parameters={"kid": "ec-1"}),
        "ec_jku": ECKey.generate_key("P-384", parameters={"kid": "ec-jku"}),
        "rogue": RSAKey.generate_key(2048, parameters={"kid": "rogue"}),
    }


@pytest.fixture(scope="module")
def jwks_server(keys) -> Iterator[JwksServer]:
    server = JwksServer()
    server.documents["/client.json"] = {"keys": [keys["ec"].as_dict(private=False)]}
    server.documents["/allowed.json"] = {"keys": [keys["ec_jku"].as_dict(private=False)]}
    server.documents["/other.json"] = {"keys": [keys["rogue"].as_dict(private=False)]}
    server.thread.start()
    yield server
    server.http.shutdown()
    server.http.server_close()


@pytest.fixture(scope="module")
def smart(tmp_path_factory, keys, jwks_server) -> Iterator[dict[str, Any]]:
    """A server with two backend clients: inline JWKS (RS384) and a JWKS URL (ES384)."""
    folder = tmp_path_factory.mktemp("smart")
    database = folder / "fhir.db"
    inline = folder / "inline.json"
    inline.write_text(json.dumps({"keys": [keys["rsa"].as_dict(private=False)]}))
    ids = {}
    for name, how in (
        ("inline", ["--jwks", str(inline)]),
        (
            "by-url",
            [
                "--jwks-url",
                jwks_server.url("/client.json"),
                "--jku",
                jwks_server.url("/allowed.json"),
            ],
        ),
    ):
        out = cli(
            database,
            "auth",
            "client",
            "add",
            "--name",
            name,
            *how,
            "--scopes",
            "system/*.rs system/Observation.cruds",
        )
        ids[name] = out.split("client_id: ")[1].split()[0]
    process = ServerProcess(database, FHIR_AUTH="on").start()
    yield {
        "server": process,
        "base": process.base,
        "database": database,
        **ids,
        "token_url": process.base.removesuffix("/fhir") + "/auth/token",
    }
    process.stop()


def assertion(smart, client: str, key: Any, alg: str, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": smart[client],
        "sub": smart[client],
        "aud": smart["token_url"],
        "exp": now + 240,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    header = {"alg": alg, "kid": key.kid, "typ": "JWT", **changes.pop("header", {})}
    claims.update(changes)
    return jwt.encode(header, claims, key, algorithms=[alg])


def ask(smart, client_assertion: str, scope: str = "system/Patient.rs") -> httpx.Response:
    return httpx.post(
        smart["token_url"],
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion,
        },
        timeout=60,
    )


def test_rs384_backend_client_gets_a_system_token_that_verifies_with_the_public_jwks(
    smart, keys
) -> None:
    reply = ask(
        smart,
        assertion(smart, "inline", keys["rsa"], "RS384"),
        "system/Patient.rs system/Observation.rs user/Patient.rs",
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["pragma"] == "no-cache"
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 300
    assert body["scope"] == "system/Patient.rs system/Observation.rs"  # no user/ for a system
    assert "refresh_token" not in body
    jwks = httpx.get(smart["base"].removesuffix("/fhir") + "/auth/jwks", timeout=30).json()
    assert all(k["kty"] == "RSA" for k in jwks["keys"])
    token = jwt.decode(body["access_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert token.header["typ"] == "at+jwt" and token.header["kid"]
    claims = token.claims
    issuer = smart["base"].removesuffix("/fhir") + "/auth"
    assert (claims["iss"], claims["aud"], claims["sub"], claims["client_id"]) == (
        issuer,
        smart["base"],
        smart["inline"],
        smart["inline"],
    )
    assert claims["scope"] == body["scope"]
    assert 0 < claims["exp"] - claims["iat"] <= 300 and claims["jti"]


def test_es384_backend_client_with_a_jwks_url_gets_a_token(smart, keys) -> None:
    reply = ask(smart, assertion(smart, "by-url", keys["ec"], "ES384"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["scope"] == "system/Patient.rs"


def test_a_jku_on_the_allow_list_is_used(smart, keys, jwks_server) -> None:
    signed = assertion(
        smart, "by-url", keys["ec_jku"], "ES384", header={"jku": jwks_server.url("/allowed.json")}
    )
    assert ask(smart, signed).status_code == 200


def _forged(smart, keys, jwks_server) -> dict[str, tuple[str, str]]:
    now = int(time.time())
    replayed = assertion(smart, "inline", keys["rsa"], "RS384")
    assert ask(smart, replayed).status_code == 200
    claims = {
        "iss": smart["inline"],
        "sub": smart["inline"],
        "aud": smart["token_url"],
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    # The classic key-confusion forgery: HMAC with the public key's PEM as the secret
    # (joserfc itself refuses to build it, so it is signed by hand).
    signing_input = f"{_b64({'alg': 'HS256', 'kid': 'rsa-1'})}.{_b64(claims)}"
    mac = hmac.new(keys["rsa"].as_pem(private=False), signing_input.encode(), hashlib.sha256)
    hs256 = f"{signing_input}.{_b64url(mac.digest())}"
    unsigned = f"{_b64({'alg': 'none', 'kid': 'rsa-1'})}.{_b64(claims)}."
    rsa = keys["rsa"]
    return {
        "replayed jti": (replayed, "jti"),
        "alg none": (unsigned, "algorithm"),
        "HS256 with the public key": (hs256, "algorithm"),
        "expired": (assertion(smart, "inline", rsa, "RS384", exp=now - 120), "expired"),
        "more than 5 minutes ahead": (
            assertion(smart, "inline", rsa, "RS384", exp=now + 600),
            "5 minutes",
        ),
        "wrong aud": (assertion(smart, "inline", rsa, "RS384", aud=smart["base"]), "aud"),
        "unknown kid": (assertion(smart, "inline", keys["rogue"], "RS384"), "kid"),
        "jku off the allow-list": (
            assertion(
                smart,
                "by-url",
                keys["rogue"],
                "RS384",
                header={"jku": jwks_server.url("/other.json")},
            ),
            "jku",
        ),
        "iss is not sub": (assertion(smart, "inline", rsa, "RS384", sub="someone"), "sub"),
    }


def _b64(part: dict[str, Any]) -> str:
    return _b64url(json.dumps(part).encode())


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_forged_and_stale_assertions_are_refused_with_invalid_client(
    smart, keys, jwks_server
) -> None:
    for case, (signed, reason) in _forged(smart, keys, jwks_server).items():
        reply = ask(smart, signed)
        assert reply.status_code in (400, 401), (case, reply.text)
        body = reply.json()
        assert body["error"] == "invalid_client", (case, body)
        assert reason in body["error_description"], (case, body)
        assert reply.headers["cache-control"] == "no-store", case


def test_backend_tokens_need_an_assertion_and_an_allowed_scope(smart, keys) -> None:
    no_assertion = httpx.post(
        smart["token_url"],
        data={
            "grant_type": "client_credentials",
            "scope": "system/Patient.rs",
            "client_id": smart["inline"],
        },
        timeout=30,
    )
    assert no_assertion.status_code in (400, 401)
    assert no_assertion.json()["error"] == "invalid_client"
    not_allowed = ask(
        smart, assertion(smart, "inline", keys["rsa"], "RS384"), "system/Patient.cruds"
    )
    assert not_allowed.status_code == 400
    assert not_allowed.json()["error"] == "invalid_scope"


def test_the_token_reads_what_its_scopes_grant_and_nothing_else(smart, keys) -> None:
    admin = cli(
        smart["database"], "auth", "token", "--scope", "system/*.*", "--base-url", smart["base"]
    ).strip()
    patient = {"resourceType": "Patient", "id": "backend-1", "name": [{"family": "Read"}]}
    put = httpx.put(
        smart["base"] + "/Patient/backend-1",
        json=patient,
        timeout=30,
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/fhir+json"},
    )
    assert put.status_code in (200, 201), put.text
    anonymous = httpx.get(smart["base"] + "/Patient/backend-1", timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    body = ask(smart, assertion(smart, "inline", keys["rsa"], "RS384")).json()
    assert body["scope"] == "system/Patient.rs"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    read = httpx.get(smart["base"] + "/Patient/backend-1", headers=bearer, timeout=30)
    assert read.status_code == 200, read.text
    assert read.json()["name"] == [{"family": "Read"}]
    found = httpx.get(
        smart["base"] + "/Patient", params={"family": "Read"}, headers=bearer, timeout=30
    )
    assert found.status_code == 200 and found.json()["total"] == 1
    refused = httpx.get(smart["base"] + "/Observation", headers=bearer, timeout=30)
    assert refused.status_code == 403, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"


def test_cli_token_for_curl_is_signed_by_the_servers_keys(smart) -> None:
    token = cli(
        smart["database"], "auth", "token", "--scope", "system/*.*", "--base-url", smart["base"]
    ).strip()
    jwks = httpx.get(smart["base"].removesuffix("/fhir") + "/auth/jwks", timeout=30).json()
    claims = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"]).claims
    assert claims["scope"] == "system/*.*" and claims["aud"] == smart["base"]
    assert claims["client_id"] == "local-admin"
    assert 0 < claims["exp"] - claims["iat"] <= 300


SMART_REQUIRED = (
    "issuer",
    "jwks_uri",
    "authorization_endpoint",
    "token_endpoint",
    "introspection_endpoint",
    "revocation_endpoint",
    "grant_types_supported",
    "code_challenge_methods_supported",
    "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported",
    "scopes_supported",
    "response_types_supported",
    "capabilities",
)
CAPABILITIES = {
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-banner",
    "context-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "context-standalone-encounter",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
}
OPENID_REQUIRED = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
)


def test_smart_configuration_lists_every_required_field(smart) -> None:
    reply = httpx.get(
        smart["base"] + "/.well-known/smart-configuration",
        timeout=30,
        headers={"Accept": "application/fhir+xml", "Origin": "https://app.test"},
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.headers["access-control-allow-origin"] == "*"
    config = reply.json()
    assert [f for f in SMART_REQUIRED if f not in config] == []
    origin = smart["base"].removesuffix("/fhir")
    assert config["issuer"] == origin + "/auth"
    for field in (
        "jwks_uri",
        "authorization_endpoint",
        "token_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
    ):
        assert config[field].startswith(origin + "/auth/"), field
    assert set(config["capabilities"]) == CAPABILITIES
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(
        config["grant_types_supported"]
    )
    assert {"private_key_jwt", "client_secret_basic"} <= set(
        config["token_endpoint_auth_methods_supported"]
    )
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert config["response_types_supported"] == ["code"]
    assert httpx.get(config["jwks_uri"], timeout=30).json()["keys"]


def test_capability_statement_declares_smart_and_its_oauth_uris(smart) -> None:
    statement = httpx.get(
        smart["base"] + "/metadata", timeout=30, headers={"Accept": "application/fhir+json"}
    ).json()
    security = statement["rest"][0]["security"]
    codings = [c for s in security["service"] for c in s["coding"]]
    assert {
        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
        "code": "SMART-on-FHIR",
        "display": "SMART-on-FHIR",
    } in codings
    (uris,) = [
        e
        for e in security["extension"]
        if e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    ]
    found = {e["url"]: e["valueUri"] for e in uris["extension"]}
    assert set(found) == {"authorize", "token", "register", "manage", "introspect", "revoke"}
    assert found["token"] == smart["token_url"]


def test_openid_configuration_and_jwks(smart) -> None:
    issuer = smart["base"].removesuffix("/fhir") + "/auth"
    config = httpx.get(issuer + "/.well-known/openid-configuration", timeout=30).json()
    assert [f for f in OPENID_REQUIRED if f not in config] == []
    assert config["issuer"] == issuer
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    keys = httpx.get(config["jwks_uri"], timeout=30).json()["keys"]
    assert keys and all(k["kty"] == "RSA" and "d" not in k and k["kid"] for k in keys)
