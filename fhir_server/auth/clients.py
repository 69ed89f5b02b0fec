"""Registered clients: the record in the AuthStore, and the view authlib's grants ask.

Three kinds, after SMART App Launch 2.2's client types:

    public       a browser or native app: no secret, PKCE only (`none` auth)
    symmetric    a confidential app with a client secret (`client_secret_basic`/`_post`)
    asymmetric   a confidential app or backend system with a JWK set (`private_key_jwt`);
                 without redirect URIs it is a Backend Services client (client_credentials)

A client may receive only the scopes it was registered with (`covers`: `system/*.rs`
covers `system/Patient.r`; v1 `read` is v2 `rs`, `write` is `cud`, `*` is `cruds`), read
by the resource server's parser (`fhir_server.auth.scopes`).
Secrets are stored as SHA-256 hashes; they are random 256-bit values, so no slow hash
is needed to resist guessing.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fhir_server.auth.scopes import parse_scope
from fhir_server.auth.store import digest

KINDS = ("public", "symmetric", "asymmetric")
AUTH_METHODS = {
    "public": ("none",),
    "symmetric": ("client_secret_basic", "client_secret_post"),
    "asymmetric": ("private_key_jwt",),
}


@dataclass(frozen=True, slots=True)
class Client:
    """A registered client, with the methods authlib's `ClientMixin` names."""

    doc: dict[str, Any]

    @property
    def client_id(self) -> str:
        return str(self.doc["id"])

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def scopes(self) -> list[str]:
        return list(self.doc.get("scopes", []))

    @property
    def jku_allowed(self) -> list[str]:
        return list(self.doc.get("jku", []))

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.doc.get("redirect_uris", [])
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scopes this client may receive, or None if it may receive none."""
        granted = [s for s in (scope or "").split() if any(covers(a, s) for a in self.scopes)]
        return " ".join(dict.fromkeys(granted)) or None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.doc.get("redirect_uris", [])  # exact match only

    def check_client_secret(self, client_secret: str) -> bool:
        stored = self.doc.get("secret_hash")
        return isinstance(stored, str) and hmac.compare_digest(stored, digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS[self.kind]

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    @property
    def grant_types(self) -> list[str]:
        return list(self.doc.get("grant_types", []))


def new_client(
    *,
    name: str,
    kind: str,
    redirect_uris: list[str],
    scopes: list[str],
    jwks_url: str | None = None,
    jwks: dict[str, Any] | None = None,
    jku: list[str] | None = None,
    client_id: str | None = None,
) -> tuple[dict[str, Any], str | None]:
    """A new client record and, for a symmetric client, its secret (shown once)."""
    if kind not in KINDS:
        raise ValueError(f"unknown client kind {kind!r}")
    if kind == "asymmetric" and not (jwks_url or jwks):
        raise ValueError("an asymmetric client needs a JWKS URL or an inline JWKS")
    if kind != "asymmetric" and not redirect_uris:
        raise ValueError("a public or symmetric client needs at least one redirect URI")
    grants = ["authorization_code", "refresh_token"] if redirect_uris else []
    if kind == "asymmetric":
        grants.append("client_credentials")
    secret = secrets.token_urlsafe(32) if kind == "symmetric" else None
    doc = {
        "id": client_id or uuid.uuid4().hex,
        "name": name,
        "kind": kind,
        "redirect_uris": redirect_uris,
        "scopes": scopes,
        "grant_types": grants,
        "jwks_url": jwks_url,
        "jwks": jwks,
        "jku": jku or [],
        "secret_hash": digest(secret) if secret else None,
        "created": time.time(),
        "removed": False,
    }
    return doc, secret


def covers(allowed: str, requested: str) -> bool:
    """Whether a registered scope lets the client ask for `requested`."""
    if allowed == requested:
        return True
    a, r = parse_scope(allowed), parse_scope(requested)
    if a is None or r is None or a.level != r.level or a.type not in ("*", r.type):
        return False
    if a.query and a.query != r.query:  # a granular registration covers only that query
        return False
    return r.letters <= a.letters
