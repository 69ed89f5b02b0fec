"""Issuing tokens: the RFC 9068 access token, the OpenID id_token, refresh tokens, and the
token response SMART App Launch 2.2 describes.

Access-token claims (the contract with the resource server): `iss`, `aud` (the FHIR base),
`sub` (the user, or the client for a backend), `client_id`, `scope`, `iat`, `exp`, `jti`,
and when the grant has them `patient`, `encounter`, `fhirContext`, `fhirUser`, `role`;
header `typ: at+jwt`, RS256 with `kid`. Backend Services tokens live at most 5 minutes.

Refresh tokens (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#scopes-for-requesting-a-refresh-token):
only when `offline_access` or `online_access` was granted and the client may refresh.
Each refresh rotates the token; all tokens of one authorization form a family that is
revoked as a whole. `offline_access` tokens live `auth_refresh_token_lifetime` from each
rotation; `online_access` tokens end at most `ONLINE_LIMIT` after the user authorized
(this server has no long-lived user session to tie them to).
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from fhir_server.auth.clients import Client
from fhir_server.auth.keys import KeyRing
from fhir_server.auth.store import AuthStore
from fhir_server.auth.urls import AuthUrls
from fhir_server.settings import Settings

BACKEND_MAX_LIFETIME = 300
ONLINE_LIMIT = 12 * 3600
CONTEXT_FIELDS = (
    "patient",
    "encounter",
    "fhirContext",
    "need_patient_banner",
    "smart_style_url",
    "intent",
    "tenant",
)
CLAIM_FIELDS = ("patient", "encounter", "fhirContext")


@dataclass(frozen=True, slots=True)
class Grantee:
    """Who authorized, with the launch context: what authlib calls the "user"."""

    user_id: str
    fhir_user: str | None = None
    role: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    nonce: str | None = None
    family: str = field(default_factory=lambda: uuid.uuid4().hex)
    auth_time: float = field(default_factory=time.time)

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Grantee:
        return cls(**doc)


class TokenIssuer:
    """Mints access, id and refresh tokens with the KeyRing; records refresh families."""

    def __init__(self, settings: Settings, store: AuthStore, keys: KeyRing) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys

    def issue(
        self,
        urls: AuthUrls,
        client: Client,
        grantee: Grantee | None,
        scope: str,
        *,
        granted: str | None = None,
    ) -> dict[str, Any]:
        """The token response for `scope`; `granted` is the whole authorization's scope
        (what a refresh token may later ask for), `scope` when absent."""
        now = int(time.time())
        lifetime = self._lifetime(grantee)
        claims = self._claims(urls, client, grantee, scope, now, lifetime)
        response: dict[str, Any] = {
            "access_token": self.keys.sign(claims),
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }
        if grantee is None:
            return response
        response.update(
            {k: grantee.context[k] for k in CONTEXT_FIELDS if grantee.context.get(k) is not None}
        )
        scopes = scope.split()
        if "openid" in scopes:
            response["id_token"] = self._id_token(urls, client, grantee, now, lifetime)
        refresh = self._refresh(client, grantee, granted or scope, claims)
        if refresh:
            response["refresh_token"] = refresh
        return response

    def _lifetime(self, grantee: Grantee | None) -> int:
        if grantee is None:
            return min(self.settings.auth_backend_token_lifetime, BACKEND_MAX_LIFETIME)
        return self.settings.auth_access_token_lifetime

    def _claims(
        self,
        urls: AuthUrls,
        client: Client,
        grantee: Grantee | None,
        scope: str,
        now: int,
        lifetime: int,
    ) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": urls.issuer,
            "aud": urls.fhir_base,
            "sub": grantee.user_id if grantee else client.client_id,
            "client_id": client.client_id,
            "scope": scope,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        if grantee is not None:
            claims.update({k: grantee.context[k] for k in CLAIM_FIELDS if grantee.context.get(k)})
            if grantee.fhir_user:
                claims["fhirUser"] = grantee.fhir_user
            if grantee.role:
                claims["role"] = grantee.role
        return claims

    def _id_token(
        self, urls: AuthUrls, client: Client, grantee: Grantee, now: int, lifetime: int
    ) -> str:
        claims: dict[str, Any] = {
            "iss": urls.issuer,
            "sub": grantee.user_id,
            "aud": client.client_id,
            "iat": now,
            "exp": now + lifetime,
            "auth_time": int(grantee.auth_time),
        }
        if grantee.nonce:
            claims["nonce"] = grantee.nonce
        if grantee.fhir_user:
            claims["fhirUser"] = grantee.fhir_user
        return self.keys.sign(claims, typ="JWT")

    def _refresh(
        self, client: Client, grantee: Grantee, granted: str, claims: dict[str, Any]
    ) -> str | None:
        """A new refresh token of the grantee's family, when the grant allows one."""
        scopes = granted.split()
        offline, online = "offline_access" in scopes, "online_access" in scopes
        expires = float(claims["exp"])
        token = None
        if client.check_grant_type("refresh_token") and (offline or online):
            expires = time.time() + self.settings.auth_refresh_token_lifetime
            if not offline:
                expires = min(expires, grantee.auth_time + ONLINE_LIMIT)
            token = secrets.token_urlsafe(32)
        if self.store.family(grantee.family) is None:
            self.store.new_family(
                grantee.family, client.client_id, expires, user_id=grantee.user_id, scope=granted
            )
        if token:
            self.store.save_refresh(
                token,
                {
                    "family": grantee.family,
                    "expires": expires,
                    "client_id": client.client_id,
                    "scope": granted,
                    "grantee": grantee.to_doc(),
                },
            )
        self.store.family_issued(grantee.family, claims["jti"], claims["exp"], expires)
        return token
