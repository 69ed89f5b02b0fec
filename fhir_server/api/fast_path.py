"""A direct route for plain FHIR reads: `GET`/`HEAD` under `/fhir` without a body.

Reads by id and searches are most of a FHIR server's traffic, and for them the general
stack (seven middleware layers, the framework's router and dependency resolution, a request
object) cost more CPU than the read itself. A request this module `accepts` is answered
here instead, doing what those layers do for such a request, in the same order:

- `X-Request-ID` (request_ids): the id is set for the request's log lines and
  OperationOutcomes and sent back;
- the request metrics (request_metrics): counted and timed with the same labels;
- the audit trail (audit_middleware): the read is recorded with what it returned;
- content negotiation, the caller's token and the FHIR service, as `app.fhir_endpoint`,
  through the same functions;
- errors rendered as the app's exception handlers render them.

Everything else takes the general stack: paths under `/fhir` that other routes serve
(`.well-known/smart-configuration`), other methods, a request with a body or a
`Content-Length`/`Transfer-Encoding` (the body limits), an `Origin` (CORS), a `Host` that
is not allowed (its 400 is answered there), a Binary read (its raw bytes are streamed
there), a query that is not UTF-8 or holds `#`, and any request before start-up is done.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response as HttpResponse
from starlette.types import Receive, Scope, Send

from fhir_server.api.audit_middleware import audited_read, record_plain_read
from fhir_server.api.hosts import host_matches
from fhir_server.api.request_ids import HEADER as REQUEST_ID
from fhir_server.api.request_metrics import RequestCounter
from fhir_server.interactions import observed
from fhir_server.logs import new_request_id, request_id

_READS = frozenset({"GET", "HEAD"})
_BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"origin"})

# (app state, scope, headers, query) -> the response, errors included (app.fast_read)
Read = Callable[[Any, Scope, dict[str, str], list[tuple[str, str]]], Awaitable[HttpResponse]]


class FastReads:
    """See the module docstring; `read` is the app's own endpoint for these requests."""

    def __init__(
        self,
        prefix: str,
        hosts: list[str],
        metrics: RequestCounter,
        read: Read,
        elsewhere: Iterable[re.Pattern[str]] = (),
    ) -> None:
        self.prefix = prefix
        self.hosts = tuple(hosts)
        self.metrics = metrics
        self.read = read
        self.elsewhere = tuple(elsewhere)  # paths under the prefix that other routes serve

    def accepts(self, scope: Scope, state: Any) -> bool:
        """Whether this request is a plain read this module answers (see the docstring)."""
        path: str = scope["path"]
        if (
            scope["method"] not in _READS
            or not path.startswith(self.prefix)
            or (len(path) > len(self.prefix) and path[len(self.prefix)] != "/")
            or scope.get("root_path")
            or b"#" in scope["query_string"]
            or "Binary" in path
            or getattr(state, "service", None) is None
            or any(route.match(path) for route in self.elsewhere)
        ):
            return False
        for key, value in scope["headers"]:
            if key in _BODY_HEADERS:
                return False
            if key == b"host" and not host_matches(value.decode("latin-1"), self.hosts):
                return False
        try:
            scope["query_string"].decode()
        except UnicodeDecodeError:
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send, state: Any) -> None:
        started = time.perf_counter()
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode("latin-1"), value.decode("latin-1"))
        current = new_request_id(headers.get("x-request-id"))
        token = request_id.set(current)
        status = 500
        trail = audited_read(state, scope["path"], self.prefix)
        seen = observed.begin() if trail is not None else None
        try:
            query = parse_qsl(scope["query_string"].decode(), keep_blank_values=True)
            response = await self.read(state, scope, headers, query)
            status = response.status_code
            response.raw_headers.append((REQUEST_ID, current.encode("ascii")))
            await response(scope, receive, send)
        finally:
            request_id.reset(token)
            self.metrics.record(scope, status, started)
            if trail is not None and seen is not None:  # as AuditMiddleware does
                record_plain_read(trail, scope, self.prefix, status, seen)


def base_url(scope: Scope, prefix: str) -> str:
    """The FHIR base the request was sent to, as Starlette's `request.base_url` + prefix."""
    scheme = scope.get("scheme", "http")
    for key, value in scope["headers"]:
        if key == b"host":
            return f"{scheme}://{value.decode('latin-1')}".rstrip("/") + prefix
    server = scope.get("server")
    if server is None:
        return prefix
    host, port = server
    default = {"http": 80, "https": 443}.get(scheme)
    return (f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}") + prefix
