"""The authorization server: authlib's framework-free `AuthorizationServer`, subclassed.

`SmartAuthServer` is what the HTTP adapter calls: `token`, `introspect`, `revoke` take
the form, headers and the request's FHIR base and return (status, JSON body, headers),
`register` the same for a JSON body (RFC 7591, `registration.py`);
`validate_authorize`, `approve` and `deny` are the protocol half of the authorize endpoint
whose pages live in the web UI.

authlib's core is synchronous, so each call runs it in a worker thread (`to_thread`), where
its storage callbacks use the synchronous AuthStore directly and a client's JWKS is
fetched with a short timeout. The overrides SMART needs are in `grants.py`; here:

- `aud` (or RFC 8707 `resource`) must be this server's FHIR base, and an EHR launch
  (`launch` scope) must carry its `launch` parameter; both errors go back to the
  redirect URI (RFC 6749 §4.1.2.1), while an unknown client or an unregistered
  redirect URI raises `AuthorizeError` (an error page, never a redirect).
- Requests whose URL is not https (or loopback http) are refused by authlib
  (InsecureTransportError): run behind TLS.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from joserfc.errors import JoseError

from fhir_server.auth import assertions
from fhir_server.auth.authorize import AuthorizeError, AuthorizeRedirectError
from fhir_server.auth.clients import Client
from fhir_server.auth.grants import BackendGrant, CodeGrant, Introspection, RefreshGrant, S256Only
from fhir_server.auth.keys import KeyRing
from fhir_server.auth.registration import ClientRegistration, registration_request
from fhir_server.auth.store import AuthStore
from fhir_server.auth.tokens import Grantee, TokenIssuer
from fhir_server.auth.urls import AuthUrls, auth_urls
from fhir_server.settings import Settings

Reply = tuple[int, dict[str, Any], dict[str, str]]
CODE_LIFETIME = 120  # seconds: RFC 6749 recommends at most 10 minutes
KEY_REFRESH_SECONDS = 60  # pick up a key rotated by another process within a minute


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """A validated authorize request, for the login, picker and consent pages."""

    client_id: str
    client_name: str
    redirect_uri: str
    scopes: list[str]
    state: str | None
    code_challenge: str
    aud: str
    launch: str | None
    nonce: str | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def wants_patient(self) -> bool:
        return "launch/patient" in self.scopes

    @property
    def wants_encounter(self) -> bool:
        return "launch/encounter" in self.scopes


class OAuthRequest(OAuth2Request):
    """An OAuth request as authlib reads it, plus the URLs it was addressed to."""

    def __init__(
        self, method: str, uri: str, form: dict[str, str], headers: dict[str, str], urls: AuthUrls
    ) -> None:
        super().__init__(method, uri, headers={k.title(): v for k, v in headers.items()})
        self.payload = BasicOAuth2Payload(form)
        self._form = form
        self.urls = urls
        self.granted_scope: str | None = None

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return self._form


class SmartChecks:
    """authlib extension: SMART's checks of an authorize request (after the scope's)."""

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.check)

    def check(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        aud = data.get("aud") or data.get("resource")
        if not aud:
            raise InvalidRequestError("aud is required: the FHIR base URL")
        if aud.rstrip("/") != grant.request.urls.fhir_base:
            raise InvalidRequestError("aud is not the FHIR base URL of this server")
        if "launch" in grant.request.scope.split() and not data.get("launch"):
            raise InvalidRequestError("the launch scope needs a launch parameter")


class OAuthCore(AuthorizationServer):
    """authlib's server over our store, keys and grants (called in a worker thread)."""

    def __init__(self, settings: Settings, store: AuthStore, keys: KeyRing) -> None:
        super().__init__()
        self.store = store
        self.keys = keys
        self.issuer = TokenIssuer(settings, store, keys)
        self.code_lifetime = CODE_LIFETIME
        self.jwks_cache = assertions.JwksCache()
        self.register_grant(CodeGrant, [S256Only(required=True), SmartChecks()])
        self.register_grant(RefreshGrant)
        self.register_grant(BackendGrant)
        self.register_endpoint(Introspection)
        from fhir_server.auth.grants import Revocation

        self.register_endpoint(Revocation)
        self.register_endpoint(ClientRegistration(self, store))
        self.register_client_auth_method("private_key_jwt", self._assertion)

    def query_client(self, client_id: str) -> Client | None:
        doc = self.store.get_client(client_id) if client_id else None
        return Client(doc) if doc else None

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        return None  # access tokens are self-contained; refresh tokens are saved on issue

    def create_oauth2_request(self, request: Any) -> OAuthRequest:
        assert isinstance(request, OAuthRequest)
        return request

    def create_json_request(self, request: Any) -> Any:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Reply:
        return status, body if isinstance(body, dict) else {}, dict(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def validate_requested_scope(self, scope: str | None) -> None:
        return None  # each client's registered scopes decide (Client.get_allowed_scope)

    def verified_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of an access token this server signed and that has not expired."""
        try:
            decoded = self.keys.verify(token)
        except (JoseError, ValueError):
            return None
        claims = decoded.claims
        if decoded.header.get("typ") != "at+jwt" or not isinstance(claims.get("jti"), str):
            return None
        return claims if claims.get("exp", 0) > time.time() else None

    def _assertion(self, query_client: Any, request: OAuthRequest) -> Client | None:
        return assertions.authenticate_assertion(
            request.form,
            token_url=request.urls.token,
            store=self.store,
            query_client=self.query_client,
            cache=self.jwks_cache,
        )


class SmartAuthServer:
    """The SMART authorization server's protocol: token, introspect, revoke, authorize."""

    def __init__(self, settings: Settings, store: AuthStore, keys: KeyRing) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.core = OAuthCore(settings, store, keys)
        self._keys_read = time.monotonic()

    def urls(self, request_base: str) -> AuthUrls:
        return auth_urls(self.settings, request_base)

    async def token(
        self, form: dict[str, str], headers: dict[str, str], request_base: str
    ) -> Reply:
        """POST /auth/token."""
        await self.fresh_keys()
        request = self._request(form, headers, request_base, "token")
        if not isinstance(request, OAuthRequest):
            return request
        reply: Reply = await asyncio.to_thread(self.core.create_token_response, request)
        return reply

    async def introspect(
        self, form: dict[str, str], headers: dict[str, str], request_base: str
    ) -> Reply:
        """POST /auth/introspect (RFC 7662)."""
        request = self._request(form, headers, request_base, "introspect")
        if not isinstance(request, OAuthRequest):
            return request
        reply: Reply = await asyncio.to_thread(
            self.core.create_endpoint_response, "introspection", request
        )
        return reply

    async def revoke(
        self, form: dict[str, str], headers: dict[str, str], request_base: str
    ) -> Reply:
        """POST /auth/revoke (RFC 7009)."""
        request = self._request(form, headers, request_base, "revoke")
        if not isinstance(request, OAuthRequest):
            return request
        reply: Reply = await asyncio.to_thread(
            self.core.create_endpoint_response, "revocation", request
        )
        return reply

    async def register(self, body: bytes, headers: dict[str, str], request_base: str) -> Reply:
        """POST /auth/register (RFC 7591, behind a registration token)."""
        try:
            request = registration_request(self.urls(request_base).register, body, headers)
        except OAuth2Error as error:  # InsecureTransportError: not over TLS
            status, error_body, reply_headers = error()
            return status, dict(error_body), dict(reply_headers)
        reply: Reply = await asyncio.to_thread(
            self.core.create_endpoint_response, "client_registration", request
        )
        return reply

    async def validate_authorize(
        self, params: dict[str, str], request_base: str = ""
    ) -> AuthorizeRequest:
        """Check an authorize request (GET query or POST form) before any page is shown."""
        return await asyncio.to_thread(self._validate_authorize, params, request_base)

    async def approve(
        self,
        req: AuthorizeRequest,
        *,
        user_id: str,
        fhir_user: str | None,
        role: str | None,
        scopes: list[str],
        context: dict[str, Any],
        request_base: str = "",
    ) -> str:
        """The redirect URL with a new code (single use, bound to the PKCE challenge)."""
        granted = [s for s in scopes if s in req.scopes]  # the user may only narrow
        grantee = Grantee(
            user_id=user_id, fhir_user=fhir_user, role=role, context=dict(context), nonce=req.nonce
        )
        return await asyncio.to_thread(self._approve, req, grantee, granted, request_base)

    def deny(self, req: AuthorizeRequest) -> str:
        """The redirect URL telling the client that the user refused (access_denied)."""
        params = [("error", "access_denied"), ("error_description", "The user denied the request")]
        if req.state:
            params.append(("state", req.state))
        return str(add_params_to_uri(req.redirect_uri, params))

    # -- internals ---------------------------------------------------------------------

    def _request(
        self, form: dict[str, str], headers: dict[str, str], request_base: str, endpoint: str
    ) -> OAuthRequest | Reply:
        """The request for authlib, or the error reply when it cannot be one."""
        urls = self.urls(request_base)
        try:
            return OAuthRequest("POST", f"{urls.issuer}/{endpoint}", form, headers, urls)
        except OAuth2Error as error:  # InsecureTransportError: not over TLS
            status, body, reply_headers = error()
            return status, dict(body), dict(reply_headers)

    async def fresh_keys(self) -> None:
        """Re-read the keys when the last read is a minute old (`auth key rotate` runs in
        another process)."""
        if time.monotonic() - self._keys_read > KEY_REFRESH_SECONDS:
            self._keys_read = time.monotonic()
            await self.keys.refresh()

    def _authorize_request(self, params: dict[str, str], request_base: str) -> OAuthRequest:
        urls = self.urls(request_base or self.settings.base_url or "")
        try:
            return OAuthRequest("GET", urls.authorize, params, {}, urls)
        except OAuth2Error as error:
            raise AuthorizeError(error.description or error.error) from None

    def _grant(self, params: dict[str, str], request_base: str) -> tuple[Any, str]:
        """authlib's validated code grant and the redirect URI, or the right error."""
        client = self.core.query_client(params.get("client_id", ""))
        if client is None:
            raise AuthorizeError("Unknown client_id")
        redirect = params.get("redirect_uri") or client.get_default_redirect_uri()
        if not redirect or not client.check_redirect_uri(redirect):
            raise AuthorizeError("The redirect_uri is not registered for this client")
        request = self._authorize_request(params, request_base)
        try:
            grant = self.core.get_consent_grant(request)
        except OAuth2Error as error:
            body = dict(error.get_body())
            if params.get("state"):
                body["state"] = params["state"]
            url = str(add_params_to_uri(redirect, list(body.items())))
            raise AuthorizeRedirectError(url) from None
        return grant, redirect

    def _validate_authorize(self, params: dict[str, str], request_base: str) -> AuthorizeRequest:
        grant, redirect = self._grant(params, request_base)
        request = grant.request
        return AuthorizeRequest(
            client_id=request.client.client_id,
            client_name=request.client.doc["name"],
            redirect_uri=redirect,
            scopes=request.scope.split(),
            state=params.get("state"),
            code_challenge=params["code_challenge"],
            aud=params.get("aud") or params.get("resource", ""),
            launch=params.get("launch"),
            nonce=params.get("nonce"),
            params=dict(params),
        )

    def _approve(
        self, req: AuthorizeRequest, grantee: Grantee, granted: list[str], request_base: str
    ) -> str:
        grant, redirect = self._grant(req.params, request_base)  # still valid now?
        grant.request.scope = " ".join(granted)
        _, _, headers = grant.create_authorization_response(redirect, grantee)
        return str(dict(headers)["Location"])
