"""The absolute URLs of the authorization server, from the settings or the request's base.

The FHIR base is `FHIR_BASE_URL` when set (a server behind a proxy), else what the request
was addressed to; the issuer is `FHIR_AUTH_ISSUER`, else the FHIR base's origin + `/auth`.
Every document and token names these, so that a client checks `iss` and `aud` against the
URLs it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from fhir_server.settings import Settings


@dataclass(frozen=True, slots=True)
class AuthUrls:
    """Where the FHIR API and each OAuth endpoint are."""

    fhir_base: str
    issuer: str

    @property
    def authorize(self) -> str:
        return f"{self.issuer}/authorize"

    @property
    def token(self) -> str:
        return f"{self.issuer}/token"

    @property
    def introspect(self) -> str:
        return f"{self.issuer}/introspect"

    @property
    def revoke(self) -> str:
        return f"{self.issuer}/revoke"

    @property
    def jwks(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def register(self) -> str:
        return f"{self.issuer}/register"

    @property
    def manage(self) -> str:
        return f"{self.issuer}/manage"


def auth_urls(settings: Settings, request_base: str) -> AuthUrls:
    """The URLs for a request whose FHIR base (scheme, host, port, `/fhir`) is `request_base`."""
    fhir_base = (settings.base_url or request_base).rstrip("/")
    if settings.auth_issuer:
        return AuthUrls(fhir_base, settings.auth_issuer.rstrip("/"))
    parts = urlsplit(fhir_base)
    return AuthUrls(fhir_base, f"{parts.scheme}://{parts.netloc}/auth")
