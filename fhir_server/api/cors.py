"""CORS, so a browser (SMART) app on its own origin can call the API.

https://fetch.spec.whatwg.org/#http-cors-protocol. Such apps authenticate with an
`Authorization: Bearer` header, never with cookies, so the answer allows the configured
origins (`*` by default) without credentials: a foreign page gets no ambient authority, and
the writes it could send without a preflight are refused by `media_types`. Preflights are
answered here (200 with the allowed methods and headers); responses expose the headers a
FHIR client reads. Starlette's CORSMiddleware does the work; it is only consulted for
requests that carry an `Origin`, which browsers send and other clients do not.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from fhir_server.api.asgi import header

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Prefer",
    "If-Match",
    "If-None-Exist",
    "If-None-Match",
    "If-Modified-Since",
)
EXPOSED_HEADERS = ("Location", "ETag", "Content-Location", "Last-Modified")
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight answer


class CorsMiddleware:
    """Cross-origin requests from `origins` (`["*"]`: any) answered as the Fetch spec says."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_credentials=False,
            allow_methods=list(METHODS),
            allow_headers=list(ALLOWED_HEADERS),
            expose_headers=list(EXPOSED_HEADERS),
            max_age=PREFLIGHT_MAX_AGE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and header(scope.get("headers"), b"origin") is not None:
            await self.cors(scope, receive, send)
            return
        await self.app(scope, receive, send)
