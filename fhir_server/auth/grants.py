"""authlib's grants and endpoints, with the overrides SMART App Launch 2.2 needs.

Each override is here because authlib's default breaks SMART (each has a test):

- `S256Only` (RFC 7636): authlib accepts `plain` and treats PKCE as optional for
  confidential clients; SMART requires S256 for every client. A missing challenge is
  refused at the authorize step, a missing verifier at the token step.
- `CodeGrant`: codes are single use by an atomic "consume" (a reused code revokes what
  it gave), accept `private_key_jwt` and public clients.
- `RefreshGrant`: rotation (a new refresh token each time, the old one used up
  atomically; reuse revokes the family), and a public client may omit `client_id` (the JS
  fhirclient sends none): the client is then the refresh token's client.
- `BackendGrant` (client_credentials): `private_key_jwt` only, `system/` scopes only.
- `Introspection` (RFC 7662) and `Revocation` (RFC 7009) over our self-contained access
  tokens (a JWT verified with the KeyRing) and stored refresh tokens.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from fhir_server.auth.clients import Client
from fhir_server.auth.tokens import Grantee

if TYPE_CHECKING:
    from fhir_server.auth.server import OAuthCore, OAuthRequest

CONFIDENTIAL = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
ANY_CLIENT = [*CONFIDENTIAL, "none"]


class S256Only(CodeChallenge):
    """PKCE with S256 only, required of every client."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 (authlib's class attribute)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("code_challenge is required (PKCE with S256)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("code_verifier is required (PKCE)")
        super().validate_code_verifier(grant, result)


class StoredCode:
    """An authorization code's record, as authlib's grant and PKCE extension read it."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.code_challenge = doc["code_challenge"]
        self.code_challenge_method = doc["code_challenge_method"]

    def get_redirect_uri(self) -> str:
        return str(self.doc["redirect_uri"])

    def get_scope(self) -> str:
        return str(self.doc["scope"])


class _Issuing:
    """Token issuing shared by our grants: through the server's `TokenIssuer`."""

    request: OAuthRequest
    server: OAuthCore

    def generate_token(
        self,
        user: Grantee | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        granted = getattr(self.request, "granted_scope", None)
        return self.server.issuer.issue(
            self.request.urls, self.request.client, user, scope or "", granted=granted
        )


class CodeGrant(_Issuing, grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ANY_CLIENT
    AUTHORIZATION_CODE_LENGTH = 43

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        grantee: Grantee = request.user
        self.server.store.save_code(
            code,
            {
                "client_id": request.client.client_id,
                "redirect_uri": request.payload.redirect_uri,
                "scope": request.scope,
                "code_challenge": data["code_challenge"],
                "code_challenge_method": data["code_challenge_method"],
                "grantee": grantee.to_doc(),
                "expires": time.time() + self.server.code_lifetime,
            },
        )

    def query_authorization_code(self, code: str, client: Client) -> StoredCode | None:
        doc, reused = self.server.store.consume_code(code)
        if doc is None or doc["client_id"] != client.client_id:
            return None
        if reused:  # RFC 6749 §4.1.2: revoke the tokens issued from this code
            self.server.store.revoke_family(doc["grantee"]["family"])
            return None
        return StoredCode(doc)

    def delete_authorization_code(self, authorization_code: StoredCode) -> None:
        return None  # consumed when it was looked up

    def authenticate_user(self, authorization_code: StoredCode) -> Grantee:
        return Grantee.from_doc(authorization_code.doc["grantee"])


class RefreshGrant(_Issuing, grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ANY_CLIENT

    def authenticate_token_endpoint_client(self) -> Client:
        """A public client may leave out `client_id`: the refresh token names its client."""
        form = self.request.form
        sends_credentials = (
            form.get("client_id")
            or form.get("client_assertion")
            or extract_basic_authorization(self.request.headers)[0]
        )
        if not sends_credentials and form.get("refresh_token"):
            doc = self.server.store.find_refresh(form["refresh_token"])
            client = self.server.query_client(doc["client_id"]) if doc else None
            if client is None:
                raise InvalidGrantError("the refresh token is not valid")
            if client.kind != "public":
                raise InvalidClientError(description="this client must authenticate")
            self.request.auth_method = "none"
            return client
        authenticated: Client = super().authenticate_token_endpoint_client()
        return authenticated

    def authenticate_refresh_token(self, refresh_token: str) -> StoredRefresh | None:
        doc = self.server.store.find_refresh(refresh_token)
        return StoredRefresh(doc) if doc else None

    def validate_token_request(self) -> None:
        super().validate_token_request()
        # Use the token up only once every check passed; a concurrent use loses here.
        if self.server.store.consume_refresh(self.request.form["refresh_token"]) is None:
            raise InvalidGrantError("the refresh token is not valid")
        self.request.granted_scope = self.request.refresh_token.get_scope()

    def authenticate_user(self, refresh_token: StoredRefresh) -> Grantee:
        return Grantee.from_doc(refresh_token.doc["grantee"])

    def revoke_old_credential(self, refresh_token: StoredRefresh) -> None:
        return None  # consumed in validate_token_request


class StoredRefresh:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def get_scope(self) -> str:
        return str(self.doc["scope"])

    def check_client(self, client: Client) -> bool:
        return bool(self.doc["client_id"] == client.client_id)


class BackendGrant(_Issuing, grants.ClientCredentialsGrant):
    """SMART Backend Services: client_credentials with a signed assertion, system scopes."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]  # noqa: RUF012

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = self.request.payload.scope or ""
        system = " ".join(s for s in requested.split() if s.startswith("system/"))
        allowed = self.request.client.get_allowed_scope(system)
        if not allowed:
            raise InvalidScopeError(
                "none of the requested system scopes is allowed for this client"
            )
        self.request.granted_scope = allowed

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(user=None, scope=self.request.granted_scope)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class TokenView:
    """An access token (verified JWT claims) or a refresh token, for RFC 7662 and 7009."""

    def __init__(self, kind: str, claims: dict[str, Any], revoked: bool) -> None:
        self.kind = kind
        self.claims = claims
        self.revoked = revoked

    def check_client(self, client: Client) -> bool:
        return bool(self.claims.get("client_id") == client.client_id)

    def is_expired(self) -> bool:
        return bool(self.claims.get("exp", 0) <= time.time())

    def is_revoked(self) -> bool:
        return self.revoked


def find_token(server: OAuthCore, token: str, hint: str | None) -> TokenView | None:
    """The access or refresh token `token` is, or None if it is neither of ours."""
    if token.count(".") == 2:
        claims = server.verified_claims(token)
        if claims is not None:
            return TokenView("access_token", claims, server.store.is_revoked(claims["jti"]))
    doc = server.store.find_refresh(token) if hint != "access_token" else None
    if doc is None:
        return None
    grantee = doc["grantee"]
    context = grantee.get("context", {})
    claims = {
        "client_id": doc["client_id"],
        "scope": doc["scope"],
        "exp": int(doc["expires"]),
        "sub": grantee["user_id"],
        "fhirUser": grantee.get("fhir_user"),
        "family": doc["family"],
        "token": token,
        **{k: context[k] for k in ("patient", "encounter", "fhirContext") if k in context},
    }
    return TokenView("refresh_token", claims, revoked=False)


class Introspection(IntrospectionEndpoint):
    """RFC 7662 for an authenticated confidential client, with SMART's fields."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL
    FIELDS = (
        "scope",
        "client_id",
        "exp",
        "iat",
        "iss",
        "sub",
        "aud",
        "patient",
        "encounter",
        "fhirContext",
        "fhirUser",
        "role",
    )

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        return find_token(self.server, token_string, token_type_hint)

    def check_permission(self, token: TokenView, client: Client, request: Any) -> bool:
        return True  # any authenticated client (a resource server) may ask

    def introspect_token(self, token: TokenView) -> dict[str, Any]:
        body = {k: token.claims[k] for k in self.FIELDS if token.claims.get(k) is not None}
        return {
            "active": True,
            "token_type": "Bearer" if token.kind == "access_token" else "refresh_token",
            **body,
        }


class Revocation(RevocationEndpoint):
    """RFC 7009: a client revokes its own access or refresh token (the family with it)."""

    CLIENT_AUTH_METHODS = ANY_CLIENT

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        return find_token(self.server, token_string, token_type_hint)

    def revoke_token(self, token: TokenView, request: Any) -> None:
        store = self.server.store
        if token.kind == "access_token":
            store.revoke_jti(token.claims["jti"], float(token.claims["exp"]))
        else:
            store.revoke_family(token.claims["family"])
