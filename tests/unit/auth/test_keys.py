"""KeyRing: RS256 access tokens that verify with the public JWKS; rotation keeps old keys."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhir_server.auth.keys import KeyRing


async def test_a_token_verifies_with_the_public_jwks_and_names_its_key(keys) -> None:
    token = keys.sign({"sub": "x"})
    jwks = keys.public_jwks()
    assert [k["kty"] for k in jwks["keys"]] == ["RSA"] and "d" not in jwks["keys"][0]
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert decoded.header == {"typ": "at+jwt", "alg": "RS256", "kid": keys.signing_kid}
    assert decoded.claims == {"sub": "x"}


async def test_rotation_signs_with_the_new_key_and_old_tokens_still_verify(keys, store) -> None:
    old_token = keys.sign({"n": 1})
    old_kid = keys.signing_kid
    new_kid = await keys.rotate()
    assert new_kid != old_kid and keys.signing_kid == new_kid
    jwks = KeySet.import_key_set(keys.public_jwks())
    assert jwt.decode(old_token, jwks, algorithms=["RS256"]).claims == {"n": 1}
    assert jwt.decode(keys.sign({"n": 2}), jwks, algorithms=["RS256"]).header["kid"] == new_kid
    other = KeyRing(store)  # another process reads the same keys
    await other.load()
    assert other.signing_kid == new_kid and len(other.public_jwks()["keys"]) == 2


async def test_expired_keys_are_dropped(store) -> None:
    ring = KeyRing(store, key_lifetime=1, longest_token=0)
    await ring.load()
    token = ring.sign({"n": 1})
    for doc in store.documents.all("keys"):
        store.documents.update("keys", doc["id"], {"expires": 0})
    await ring.refresh()
    assert ring.public_jwks() == {"keys": []}
    with pytest.raises((JoseError, ValueError)):
        ring.verify(token)
