"""What the sign-in pages need of the OAuth 2.0 authorization server (the authorize step).

The protocol side (client and redirect URI checks, PKCE, `aud`, codes, tokens) belongs to
the authorization server; the pages own the browser side (sessions, login, pickers,
consent). They meet here: the pages depend only on this protocol, never on the server's
implementation, so either side can change behind it.

Flow: `validate_authorize(params, request_base)` checks an authorize request and returns
it (or raises `AuthorizeRedirectError` with the error redirect when the redirect URI is
valid, and `AuthorizeError` when it is not: that error is shown on a page, never
redirected). After the user signs in, picks and consents, `approve(...)` returns the
redirect URL that carries the code and `state`; `deny(req)` returns the one with
`error=access_denied`. `request_base` is the FHIR base URL the browser reached the pages
at: without a configured base URL, the server checks the request's `aud` against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class AuthorizeError(Exception):
    """An authorize request whose client or redirect URI is invalid: shown on a page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthorizeRedirectError(Exception):
    """An authorize request refused with an error sent back to its (valid) redirect URI."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class AuthorizeRequestView(Protocol):
    """The parts of a validated authorize request that the pages read."""

    @property
    def client_id(self) -> str: ...

    @property
    def scopes(self) -> Sequence[str]: ...

    @property
    def launch(self) -> str | None: ...


class AuthorizationServer(Protocol):
    """The authorize-step interface of the SMART authorization server."""

    async def validate_authorize(
        self, params: dict[str, str], request_base: str = ""
    ) -> AuthorizeRequestView: ...

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
    ) -> str: ...

    def deny(self, req: Any) -> str: ...


def client_label(req: AuthorizeRequestView) -> str:
    """The app's name for the pages: the registered client name when the request carries
    one, else its client_id."""
    client = getattr(req, "client", None)
    name = getattr(req, "client_name", None) or getattr(client, "name", None)
    return str(name or req.client_id)
