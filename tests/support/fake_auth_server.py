"""A stand-in for the SMART authorization server's authorize step, for the sign-in pages'
tests: it implements `fhir_server.auth.authorize.AuthorizationServer` with registered
clients in memory and records what `approve` was given, so tests can check what the pages
granted. It checks what the pages rely on (client, exact redirect URI, response_type, PKCE
S256, aud) and nothing of the token side.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fhir_server.auth.authorize import AuthorizeError, AuthorizeRedirectError


@dataclass(frozen=True)
class FakeClient:
    client_id: str
    name: str
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class FakeAuthorizeRequest:
    client_id: str
    client_name: str
    redirect_uri: str
    scopes: Sequence[str]
    state: str | None
    launch: str | None


@dataclass
class Approval:
    code: str
    client_id: str
    user_id: str
    fhir_user: str | None
    role: str | None
    scopes: list[str]
    context: dict[str, Any]


@dataclass
class FakeSmartAuthServer:
    aud: str
    clients: dict[str, FakeClient] = field(default_factory=dict)
    approvals: dict[str, Approval] = field(default_factory=dict)
    denials: int = 0

    def register(self, client_id: str, name: str, *redirect_uris: str) -> FakeClient:
        client = FakeClient(client_id, name, tuple(redirect_uris))
        self.clients[client_id] = client
        return client

    async def validate_authorize(
        self, params: dict[str, str], request_base: str = ""
    ) -> FakeAuthorizeRequest:
        client = self.clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        if client is None or redirect_uri not in client.redirect_uris:
            raise AuthorizeError("Unknown client, or a redirect_uri it did not register.")
        state = params.get("state")
        if params.get("response_type") != "code":
            raise AuthorizeRedirectError(_url(redirect_uri, "unsupported_response_type", state))
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            raise AuthorizeRedirectError(_url(redirect_uri, "invalid_request", state))
        if params.get("aud", params.get("resource")) != self.aud:
            raise AuthorizeRedirectError(_url(redirect_uri, "invalid_request", state))
        return FakeAuthorizeRequest(
            client.client_id,
            client.name,
            redirect_uri,
            tuple(params.get("scope", "").split()),
            state,
            params.get("launch"),
        )

    async def approve(
        self,
        req: Any,
        *,
        user_id: str,
        fhir_user: str | None,
        role: str | None,
        scopes: list[str],
        context: dict[str, Any],
        request_base: str = "",
    ) -> str:
        code = secrets.token_urlsafe(16)
        self.approvals[code] = Approval(
            code, req.client_id, user_id, fhir_user, role, list(scopes), dict(context)
        )
        query = {"code": code, **({"state": req.state} if req.state else {})}
        return f"{req.redirect_uri}?{urlencode(query)}"

    def deny(self, req: Any) -> str:
        self.denials += 1
        return _url(req.redirect_uri, "access_denied", req.state)


def _url(redirect_uri: str, error: str, state: str | None) -> str:
    query = {"error": error, **({"state": state} if state else {})}
    return f"{redirect_uri}?{urlencode(query)}"
