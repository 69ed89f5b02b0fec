"""The audit trail's view of HTTP: one record per exchange worth auditing, queued after
the response was sent (see `fhir_server.audit`).

Audited: every request under the FHIR base but the public CapabilityStatement and SMART
discovery documents (reads, searches, writes, operations, exports, and those refused or
failed: 401, 403, 4xx, 5xx, whatever answered them), token requests (`/auth/token`: issued
or refused), sign-ins (`POST /auth/login`), and HL7 v2 messages posted to `/hl7v2` that
were refused (accepted ones are recorded as HL7 v2 messages, with their ACK). The request
path pays an `Observed` record, a closure around `send` and, after the response, the
trail's `record` (a read joins the flush window's journal entry: about 2 µs).
The read fast path (`fast_path`), which skips this middleware, records its reads with
`record_plain_read` (the same record).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.audit.records import Exchange, Kind
from fhir_server.audit.trail import AuditTrail
from fhir_server.interactions import observed

_PUBLIC = ("metadata", ".well-known/smart-configuration")


def audited_read(state: object, path: str, prefix: str) -> AuditTrail | None:
    """The trail a plain read under `prefix` goes to (None: audit off, or a public page).
    The fast path for plain reads (`fast_path`), which skips this middleware, calls it."""
    trail: AuditTrail | None = getattr(state, "audit", None)
    if trail is None or path[len(prefix) :].strip("/") in _PUBLIC:
        return None
    return trail


def record_plain_read(
    trail: AuditTrail, scope: Scope, prefix: str, status: int, seen: observed.Observed
) -> None:
    """Queue the record of a plain read answered by the fast path (as `__call__` does)."""
    client = scope.get("client")
    trail.record(
        Exchange(
            "rest",
            scope["method"],
            scope["path"][len(prefix) :].strip("/"),
            scope.get("query_string", b""),
            status,
            client[0] if client else None,
            time.time(),
            seen,
        )
    )


class AuditMiddleware:
    def __init__(self, app: ASGIApp, fhir_prefix: str, hl7_path: str) -> None:
        self.app = app
        self.prefix = fhir_prefix
        self.hl7_path = hl7_path

    def _kind(self, method: str, path: str) -> Kind | None:
        if path == self.prefix or path.startswith(self.prefix + "/"):
            relative = path[len(self.prefix) :].strip("/")
            return None if relative in _PUBLIC or method == "OPTIONS" else "rest"
        if method != "POST":
            return None
        kinds: dict[str, Kind] = {
            "/auth/token": "token",
            "/auth/login": "login",
            self.hl7_path: "rest",
        }
        return kinds.get(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trail: AuditTrail | None = None
        if scope["type"] == "http":
            app = scope.get("app")
            trail = getattr(app.state, "audit", None) if app is not None else None
        kind = self._kind(scope["method"], scope["path"]) if trail is not None else None
        if trail is None or kind is None:
            await self.app(scope, receive, send)
            return
        seen = observed.begin()
        status = 500  # what the server error handler answers when the app raises

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = scope["path"]
            if kind == "rest" and path != self.hl7_path:
                path = path[len(self.prefix) :].strip("/")
            if path != self.hl7_path or status >= 400:
                client = scope.get("client")
                trail.record(
                    Exchange(
                        kind,
                        scope["method"],
                        path,
                        scope.get("query_string", b""),
                        status,
                        client[0] if client else None,
                        time.time(),
                        seen,
                    )
                )
