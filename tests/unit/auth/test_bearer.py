"""The resource server's token check (RFC 9068, RFC 6750): what passes, what is a 401."""

from __future__ import annotations

import base64
import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from fhir_server.auth import bearer
from fhir_server.auth.bearer import BearerVerifier, expected_issuer
from fhir_server.errors import Unauthorized
from tests.support.smart import AUDIENCE, ISSUER, TestKeyRing, TestRevocations


@pytest.fixture(scope="module")
def ring() -> TestKeyRing:
    return TestKeyRing()


@pytest.fixture
def revocations() -> TestRevocations:
    return TestRevocations()


@pytest.fixture
def verifier(ring: TestKeyRing, revocations: TestRevocations) -> BearerVerifier:
    return BearerVerifier(ring, revocations)


async def refused(verifier: BearerVerifier, header: str | None) -> Unauthorized:
    with pytest.raises(Unauthorized) as raised:
        await verifier.verify(header, AUDIENCE)
    return raised.value


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_a_valid_token_gives_its_context(verifier: BearerVerifier, ring: TestKeyRing) -> None:
    token = ring.token(
        "launch/patient patient/*.read openid",
        patient="p1",
        fhirUser="Practitioner/dr1",
        role="clinician",
        encounter="e1",
    )
    ctx = await verifier.verify(f"Bearer {token}", AUDIENCE)
    assert ctx.scopes == frozenset({"launch/patient", "patient/*.read", "openid"})
    assert (ctx.patient, ctx.fhir_user, ctx.role, ctx.encounter, ctx.client_id) == (
        "p1",
        "Practitioner/dr1",
        "clinician",
        "e1",
        "app-1",
    )
    assert ctx.jti and not ctx.system


async def test_no_token_is_a_bare_bearer_challenge(verifier: BearerVerifier) -> None:
    for header in (None, "", "Basic dXNlcjpwYXNz"):
        error = await refused(verifier, header)
        assert error.status == 401
        assert error.headers["WWW-Authenticate"] == 'Bearer realm="fhir"'


def _claims(**change: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u",
        "client_id": "c",
        "scope": "user/*.read",
        "iat": now,
        "exp": now + 300,
        "jti": "j1",
    }
    claims.update(change)
    return {k: v for k, v in claims.items() if v is not None}


BAD = {
    "garbage": lambda ring: "not-a-jwt",
    "expired": lambda ring: ring.sign(_claims(exp=int(time.time()) - 120)),
    "other audience": lambda ring: ring.sign(_claims(aud="http://elsewhere/fhir")),
    "other issuer": lambda ring: ring.sign(_claims(iss="http://evil/auth")),
    "no exp": lambda ring: ring.sign(_claims(exp=None)),
    "no jti": lambda ring: ring.sign(_claims(jti=None)),
    "an id token (typ JWT)": lambda ring: ring.sign(_claims(), typ="JWT"),
    "tampered payload": lambda ring: _tamper(ring.sign(_claims())),
    "alg none": lambda ring: (
        _b64({"alg": "none", "typ": "at+jwt", "kid": ring.keys[0].kid})
        + "."
        + _b64(_claims())
        + "."
    ),
    "HS256 with the public key as secret": lambda ring: jwt.encode(
        {"alg": "HS256", "typ": "at+jwt", "kid": ring.keys[0].kid},
        _claims(),
        OctKey.import_key(json.dumps(ring.public_jwks()).encode()),
        algorithms=["HS256"],
    ),
    "two tokens": lambda ring: ring.sign(_claims()) + " " + ring.sign(_claims()),
}


def _tamper(token: str) -> str:
    head, _, rest = token.partition(".")
    _, _, signature = rest.partition(".")
    return f"{head}.{_b64(_claims(scope='system/*.*'))}.{signature}"


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_tokens_are_invalid_token(
    verifier: BearerVerifier, ring: TestKeyRing, case: str
) -> None:
    error = await refused(verifier, f"Bearer {BAD[case](ring)}")
    assert error.status == 401
    assert 'error="invalid_token"' in error.headers["WWW-Authenticate"]


async def test_an_unknown_kid_reloads_the_keys_at_most_every_5_seconds(ring: TestKeyRing) -> None:
    verifier = BearerVerifier(ring)
    new_kid = await ring.rotate()
    ring.hidden.add(new_kid)  # the server has not seen the rotation yet
    before = ring.refreshes
    ctx = await verifier.verify(f"Bearer {ring.token('user/*.read')}", AUDIENCE)
    assert ctx.subject == "user-1" and ring.refreshes == before + 1
    stranger = TestKeyRing()  # a key nobody published: refused, without another reload now
    await refused(verifier, f"Bearer {stranger.token('user/*.read')}")
    assert ring.refreshes == before + 1


async def test_old_keys_verify_after_a_rotation(ring: TestKeyRing) -> None:
    verifier = BearerVerifier(ring)
    old = ring.sign(_claims(jti="old"), key=ring.keys[0])
    await ring.rotate()
    assert (await verifier.verify(f"Bearer {old}", AUDIENCE)).jti == "old"


async def test_a_revoked_token_is_refused(ring: TestKeyRing, revocations: TestRevocations) -> None:
    clock = [time.time()]
    verifier = BearerVerifier(ring, revocations, clock=lambda: clock[0])
    token = ring.token("user/*.read")
    ctx = await verifier.verify(f"Bearer {token}", AUDIENCE)
    assert ctx.jti is not None
    revocations.revoke(ctx.jti)
    await verifier.verify(f"Bearer {token}", AUDIENCE)  # within the second: the cached set
    clock[0] += bearer.REVOKED_RELOAD
    error = await refused(verifier, f"Bearer {token}")
    assert "revoked" in error.diagnostics


async def test_revocations_are_read_at_most_once_a_second(
    ring: TestKeyRing, revocations: TestRevocations
) -> None:
    verifier = BearerVerifier(ring, revocations)
    token = ring.token("user/*.read")
    for _ in range(50):
        await verifier.verify(f"Bearer {token}", AUDIENCE)
    assert revocations.calls <= 2


async def test_a_verified_token_is_not_decoded_again(
    ring: TestKeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = BearerVerifier(ring)
    token = ring.token("user/*.read")
    first = await verifier.verify(f"Bearer {token}", AUDIENCE)
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: pytest.fail("decoded again"))
    assert await verifier.verify(f"Bearer {token}", AUDIENCE) is first
    monkeypatch.undo()
    with pytest.raises(Unauthorized):  # the cache is per audience: another base decodes
        await verifier.verify(f"Bearer {token}", "http://other/fhir")


async def test_a_cached_token_still_expires(ring: TestKeyRing) -> None:
    clock = [time.time()]
    verifier = BearerVerifier(ring, clock=lambda: clock[0])
    token = ring.token("user/*.read", lifetime=60)
    await verifier.verify(f"Bearer {token}", AUDIENCE)
    clock[0] += 60 + bearer.LEEWAY + 1
    with pytest.raises(Unauthorized):
        await verifier.verify(f"Bearer {token}", AUDIENCE)


def test_the_issuer_is_the_origin_of_the_base_plus_auth() -> None:
    assert expected_issuer("https://fhir.example.org:8443/fhir") == (
        "https://fhir.example.org:8443/auth"
    )
    assert expected_issuer("https://x/fhir", "https://login.example.org/") == (
        "https://login.example.org"
    )
