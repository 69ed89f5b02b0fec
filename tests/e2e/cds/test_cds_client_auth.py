"""CDS clients' JWTs over real HTTP: the attack list is refused with 401 and a reason; a
registered client's ES384 (jku) and RS384 (inline JWKS) tokens are accepted; JWK sets are
cached as their Cache-Control says."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import RSAKey

from cds_hooks import jwks
from tests.support.cds_client import CdsClient, JwksHost, cds_cli, forged, new_key
from tests.support.cds_services import Hba1cService


@pytest.fixture(scope="module")
def engine() -> str:
    return "sqlite"  # the JWT checks do not touch FHIR storage; the jti store: unit tests


@pytest.fixture(scope="module")
def stack(cds_stack_factory):
    return cds_stack_factory([Hba1cService()], [{"resourceType": "Patient", "id": "p1"}])


def _url(stack, service: str = "test-hba1c") -> str:
    return f"{stack.root}/cds-services/{service}"


def _claims(stack, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": stack.client.iss, "aud": _url(stack), "exp": now + 60, "iat": now}
    return {**claims, "jti": uuid.uuid4().hex, **extra}


def _call(stack, token: str):
    nothing = {"patient": None, "hba1c": None}
    return stack.client.call_service(
        "test-hba1c", hook="patient-view", patient_id="p1", prefetch=nothing, token=token
    )


def _refused(answer, why: str) -> None:
    assert answer.status_code == 401, answer.text
    assert why in answer.json()["issue"][0]["diagnostics"]
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_good_token_is_accepted(stack) -> None:
    assert _call(stack, stack.client.token(_url(stack))).status_code == 200


def test_alg_none_is_refused(stack) -> None:
    header = {"alg": "none", "typ": "JWT", "kid": stack.client.key.kid}
    _refused(_call(stack, forged(header, _claims(stack))), "not accepted")


def test_hs256_is_refused_with_any_secret_and_with_the_public_key_bytes(stack) -> None:
    header = {"alg": "HS256", "typ": "JWT", "kid": stack.client.key.kid}
    _refused(_call(stack, forged(header, _claims(stack), b"guessed secret")), "not accepted")
    public = stack.client.key.as_pem(private=False)
    _refused(_call(stack, forged(header, _claims(stack), public)), "not accepted")
    raw = stack.client.key.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    _refused(_call(stack, forged(header, _claims(stack), raw)), "not accepted")


def test_an_aud_for_another_service_is_refused(stack) -> None:
    token = stack.client.token(_url(stack, "other-service"))
    _refused(_call(stack, token), "aud must be the URL called")


def test_an_expired_token_is_refused(stack) -> None:
    now = int(time.time())
    token = stack.client.token(_url(stack), exp=now - 120, iat=now - 180)
    _refused(_call(stack, token), "expired")


def test_a_replayed_jti_is_refused(stack) -> None:
    token = stack.client.token(_url(stack))
    assert _call(stack, token).status_code == 200
    _refused(_call(stack, token), "replay")


def test_a_jku_off_the_allow_list_is_refused_and_never_fetched(stack) -> None:
    attacker = new_key(stack.client.key.kid)
    evil = JwksHost({"keys": [attacker.as_dict(private=False)]}).start()
    try:
        intruder = CdsClient(stack.root, stack.client.fhir, stack.client.iss, attacker, evil.url)
        _refused(_call(stack, intruder.token(_url(stack))), "jku is not on the client's allow-list")
        assert evil.fetches == 0
    finally:
        evil.stop()
        intruder.http.close()


def test_a_key_not_the_clients_is_refused(stack) -> None:
    stranger = new_key()  # a kid the client's JWKS does not have
    intruder = CdsClient(stack.root, stack.client.fhir, stack.client.iss, stranger, stack.jwks.url)
    _refused(_call(stack, intruder.token(_url(stack))), f"has kid {stranger.kid}")
    forger = new_key(stack.client.key.kid)  # the right kid, another key
    intruder.key = forger
    _refused(_call(stack, intruder.token(_url(stack))), "signature does not verify")
    intruder.http.close()


@pytest.mark.parametrize(("drop", "why"), [("typ", "typ JWT"), ("kid", "needs a kid")])
def test_missing_typ_or_kid_is_refused(stack, drop: str, why: str) -> None:
    token = stack.client.token(_url(stack), header={drop: None})
    _refused(_call(stack, token), why)


def test_a_wrong_typ_is_refused(stack) -> None:
    _refused(_call(stack, stack.client.token(_url(stack), header={"typ": "at+jwt"})), "typ JWT")


def test_iat_in_the_future_is_refused(stack) -> None:
    token = stack.client.token(_url(stack), iat=int(time.time()) + 600)
    _refused(_call(stack, token), "iat is in the future")


def test_an_exp_too_far_ahead_is_refused(stack) -> None:
    token = stack.client.token(_url(stack), exp=int(time.time()) + 3600)
    _refused(_call(stack, token), "more than 5 minutes ahead")


def test_an_unknown_iss_is_refused(stack) -> None:
    _refused(_call(stack, stack.client.token(_url(stack), iss="https://evil.example")), "iss")


def test_discovery_and_feedback_need_a_token_too(stack) -> None:
    for url in (f"{stack.root}/cds-services", f"{_url(stack)}/feedback"):
        answer = stack.client.http.request(
            "GET" if url.endswith("services") else "POST",
            url,
            content=b'{"feedback": []}',
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 401, url
    discovery = f"{stack.root}/cds-services"
    wrong = stack.client.http.get(discovery, headers=stack.client.headers(_url(stack)))
    _refused(wrong, "aud must be the URL called")


def test_the_jwks_is_cached_per_its_cache_control(stack, monkeypatch) -> None:
    monkeypatch.setattr(jwks, "REFETCH_SECONDS", 0.0)  # earlier tests refetched just now
    assert _call(stack, stack.client.token(_url(stack))).status_code == 200  # cached now
    before = stack.jwks.fetches
    for _ in range(3):
        assert _call(stack, stack.client.token(_url(stack))).status_code == 200
    assert stack.jwks.fetches == before  # max-age=300: kept
    stack.jwks.cache_control = "no-store"
    rotated = new_key()
    stack.jwks.jwks = {"keys": [rotated.as_dict(private=False)]}
    stack.client.key = rotated  # a kid not cached: fetched again, then not kept
    assert _call(stack, stack.client.token(_url(stack))).status_code == 200
    assert _call(stack, stack.client.token(_url(stack))).status_code == 200
    assert stack.jwks.fetches == before + 2


def test_rs384_with_an_inline_jwks(stack, tmp_path) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    iss = "https://rsa-ehr.example.org"
    added = cds_cli(stack.database, "client", "add", "--iss", iss, "--jwks-file", str(jwks_file))
    assert added.returncode == 0, added.stderr
    client = CdsClient(stack.root, stack.client.fhir, iss, key)  # type: ignore[arg-type]
    token = client.token(_url(stack), header={"alg": "RS384"})
    assert _call(stack, token).status_code == 200
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
    refused = cds_cli(stack.database, "client", "add", "--iss", "x", "--jwks-file", str(private))
    assert refused.returncode == 2 and "private key material" in refused.stderr
    client.http.close()
