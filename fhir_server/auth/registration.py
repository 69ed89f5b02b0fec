"""RFC 7591 dynamic client registration, behind an initial access token.

    POST {issuer}/register    Authorization: Bearer <registration token>
                              JSON client metadata in; 201 and the client information out

https://www.rfc-editor.org/rfc/rfc7591#section-3: "The client registration endpoint MAY be
designed to accept authorized registrations" -- here it must: only the holder of an
initial access token that an operator made with `fhir-server auth client
registration-token` may register (SMART 2.2 lists dynamic registration as optional; an open
endpoint would let anyone give themselves scopes). The token is random, stored as its
SHA-256 until it expires, and may register several clients while it lives. A missing,
unknown or expired token is 401 `invalid_token` with `WWW-Authenticate: Bearer` (RFC 6750;
the header names the error only when a token was sent).

authlib's `ClientRegistrationEndpoint` does the protocol (authenticate, validate the
metadata with `ClientMetadataClaims`, save, 201 with the client information); the
subclasses here fit it to the store: a client is made by `clients.new_client` and saved
with `AuthStore.add_client`, the one path `fhir-server auth client add` takes too.

Metadata understood (anything else is ignored, as §2 allows):
- `token_endpoint_auth_method`: `none` (a public app), `client_secret_basic` or
  `client_secret_post` (a secret, returned once and stored hashed), `private_key_jwt`
  (with `jwks` or `jwks_uri`: public keys only); RFC 7591's default is
  `client_secret_basic`;
- `redirect_uris` (exact match later; no fragments, no userinfo), `client_name`, `scope`
  (required: the scopes the client may receive), `grant_types` (narrows what the client's
  kind allows: `authorization_code` and `refresh_token` with redirect URIs,
  `client_credentials` for `private_key_jwt`), `response_types` (`code` only).
Errors (§3.2.2): `invalid_redirect_uri` and `invalid_client_metadata`, 400, as JSON.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
from authlib.oauth2.rfc6749.errors import InsecureTransportError
from authlib.oauth2.rfc6749.requests import JsonPayload, JsonRequest
from authlib.oauth2.rfc6750.errors import InvalidTokenError
from authlib.oauth2.rfc7591 import ClientMetadataClaims, ClientRegistrationEndpoint
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError, InvalidRedirectURIError
from joserfc.errors import InvalidClaimError

from fhir_server.auth.clients import AUTH_METHODS, new_client
from fhir_server.auth.discovery import GRANT_TYPES
from fhir_server.auth.store import AuthStore

TOKEN_LIFETIME = 24 * 3600  # seconds a registration token lives by default
REALM = "register"
PRIVATE_MEMBERS = {"d", "p", "q", "k"}  # RFC 7518 §6: private RSA/EC parts, symmetric keys
KIND_OF_METHOD = {method: kind for kind, methods in AUTH_METHODS.items() for method in methods}
_STRING_LISTS = ("redirect_uris", "grant_types", "response_types", "contacts")
_STRINGS = (
    "client_name",
    "scope",
    "token_endpoint_auth_method",
    "jwks_uri",
    "client_uri",
    "logo_uri",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
)
Registered = tuple[dict[str, Any], str | None]  # the client record, its secret (or None)


def new_registration_token(store: AuthStore, lifetime: float = TOKEN_LIFETIME) -> str:
    """A new initial access token, valid `lifetime` seconds (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    store.save_registration_token(token, time.time() + lifetime)
    return token


class Metadata(JsonPayload):
    """The request's JSON object, as authlib's endpoint reads it. A body that is not one
    is reported when authlib reads it, after the registration token was checked (so that
    a caller without a token learns only that)."""

    def __init__(self, body: bytes, content_type: str) -> None:
        self._data: dict[str, Any] | None = None
        self._error = "the body must be a JSON object (Content-Type: application/json)"
        if content_type.split(";")[0].strip().lower() == "application/json":
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
            self._data = parsed if isinstance(parsed, dict) else None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            raise InvalidClientMetadataError(self._error)
        return self._data


def registration_request(uri: str, body: bytes, headers: dict[str, str]) -> JsonRequest:
    """The registration request for authlib: `body` is the raw request body. Like every
    OAuth endpoint here, it needs https (or loopback http): it returns a client secret."""
    InsecureTransportError.check(uri)
    lowered = {k.lower(): v for k, v in headers.items()}
    request = JsonRequest("POST", uri, lowered)
    request.payload = Metadata(body, lowered.get("content-type", ""))
    return request


class SmartClientMetadata(ClientMetadataClaims):
    """authlib's RFC 7591 §2 checks, with the types checked first (a list where a string
    belongs is `invalid_client_metadata`, never a crash), redirect URI errors reported as
    `invalid_redirect_uri`, and only public keys accepted in `jwks`."""

    REGISTERED_CLAIMS = [  # noqa: RUF012 (authlib's class attribute)
        "redirect_uris",
        "token_endpoint_auth_method",
        "grant_types",
        "response_types",
        "client_name",
        "scope",
        "jwks_uri",
        "jwks",
    ]

    def validate(self, now: Any = None, leeway: int = 0) -> None:
        for key in _STRING_LISTS:
            value = self.get(key)
            if value is not None and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                self._invalid(key, "must be an array of strings")
        for key in _STRINGS:
            if self.get(key) is not None and not isinstance(self[key], str):
                self._invalid(key, "must be a string")
        if self.get("jwks") is not None and not isinstance(self["jwks"], dict):
            self._invalid("jwks", "must be a JWK Set object")
        if not str(self.get("scope") or "").split():
            self._invalid("scope", "is required: the scopes the client may receive")
        super().validate(now, leeway)

    def validate_redirect_uris(self) -> None:
        try:
            super().validate_redirect_uris()
        except InvalidClaimError:
            raise InvalidRedirectURIError(
                "each redirect URI must be an absolute URL without a fragment or user name"
            ) from None

    def validate_jwks(self) -> None:
        super().validate_jwks()
        keys = (self.get("jwks") or {}).get("keys", [])
        if any(PRIVATE_MEMBERS & set(key) for key in keys if isinstance(key, dict)):
            self._invalid("jwks", "must hold public keys only")

    @staticmethod
    def _invalid(key: str, why: str) -> None:
        raise InvalidClientMetadataError(f"{key} {why}")


class TokenRequired(InvalidTokenError):
    """No registration token at all: 401 with a bare challenge (RFC 6750 §3.1: "the resource
    server SHOULD NOT include an error code" in it then)."""

    def get_headers(self) -> list[tuple[str, str]]:
        headers = [h for h in super().get_headers() if h[0] != "WWW-Authenticate"]
        return [*headers, ("WWW-Authenticate", f'Bearer realm="{REALM}"')]


class ClientRegistration(ClientRegistrationEndpoint):
    """authlib's registration endpoint over the AuthStore (runs in a worker thread)."""

    def __init__(self, server: Any, store: AuthStore) -> None:
        super().__init__(server, [SmartClientMetadata])
        self.store = store

    def authenticate_token(self, request: JsonRequest) -> str:
        header = str(request.headers.get("authorization", ""))
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenRequired("a registration token is required (Authorization: Bearer ...)")
        if not self.store.registration_token_ok(token):
            raise InvalidTokenError("the registration token is unknown or expired", realm=REALM)
        return token

    def get_server_metadata(self) -> dict[str, Any]:
        # No `scopes_supported`: discovery lists examples, not every scope a client may hold.
        return {
            "grant_types_supported": list(GRANT_TYPES),
            "token_endpoint_auth_methods_supported": list(KIND_OF_METHOD),
            "response_types_supported": ["code"],
        }

    def generate_client_info(self, request: JsonRequest) -> dict[str, Any]:
        return {}  # `new_client` makes the id and the secret (see save_client)

    def save_client(
        self, client_info: dict[str, Any], metadata: dict[str, Any], request: JsonRequest
    ) -> Registered:
        doc, secret = client_from_metadata(metadata)
        self.store.add_client(doc)
        return doc, secret

    def generate_client_registration_info(
        self, client: Registered, request: JsonRequest
    ) -> dict[str, Any]:
        return client_information(*client)


def client_from_metadata(metadata: dict[str, Any]) -> Registered:
    """A new client record (and its secret) from validated RFC 7591 metadata."""
    method = metadata["token_endpoint_auth_method"]
    kind = KIND_OF_METHOD[method]
    uris = list(metadata.get("redirect_uris") or [])
    jwks_url, jwks = metadata.get("jwks_uri"), metadata.get("jwks")
    if kind != "asymmetric" and (jwks_url or jwks):
        raise InvalidClientMetadataError(f"jwks and jwks_uri need private_key_jwt, not {method}")
    if kind != "asymmetric" and not uris:
        raise InvalidRedirectURIError(f"a client using {method} needs redirect_uris")
    client_id = secrets.token_hex(16)
    try:
        doc, secret = new_client(
            name=metadata.get("client_name") or client_id,
            kind=kind,
            redirect_uris=uris,
            scopes=metadata["scope"].split(),
            jwks_url=jwks_url,
            jwks=jwks,
            client_id=client_id,
        )
    except ValueError as error:
        raise InvalidClientMetadataError(str(error)) from None
    doc["grant_types"] = _grant_types(metadata.get("grant_types"), doc["grant_types"])
    doc["token_endpoint_auth_method"] = method
    return doc, secret


def _grant_types(requested: list[str] | None, allowed: list[str]) -> list[str]:
    """The requested grant types (all the kind allows when none are named)."""
    if requested is None:
        return allowed
    refused = sorted(set(requested) - set(allowed))
    if refused:
        raise InvalidClientMetadataError(
            f"grant_types not available to this client: "
            f"{', '.join(refused)} (it may use "
            f"{', '.join(allowed) or 'none'})"
        )
    return [grant for grant in allowed if grant in requested]


def client_information(doc: dict[str, Any], secret: str | None) -> dict[str, Any]:
    """The 201 body (RFC 7591 §3.2.1): the client_id, the secret once, and the metadata as
    registered."""
    info: dict[str, Any] = {
        "client_id": doc["id"],
        "client_id_issued_at": int(doc["created"]),
        "client_name": doc["name"],
        "token_endpoint_auth_method": doc["token_endpoint_auth_method"],
        "grant_types": doc["grant_types"],
        "scope": " ".join(doc["scopes"]),
        "redirect_uris": doc["redirect_uris"],
    }
    if "authorization_code" in doc["grant_types"]:
        info["response_types"] = ["code"]
    if secret is not None:
        info.update(client_secret=secret, client_secret_expires_at=0)  # 0: never expires
    if doc.get("jwks_url"):
        info["jwks_uri"] = doc["jwks_url"]
    if doc.get("jwks"):
        info["jwks"] = doc["jwks"]
    return info


__all__ = [
    "TOKEN_LIFETIME",
    "ClientRegistration",
    "new_registration_token",
    "registration_request",
]
