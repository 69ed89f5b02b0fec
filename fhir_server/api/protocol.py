"""uvicorn's httptools protocol with a deadline for each request head and a connection cap.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) but has no deadline for
the request head: a client that opens a socket and sends nothing, or a header byte every
few seconds, holds it for ever, and enough of them exhaust the server's sockets. Here:

- the head of each request (from the connection's start, or from its first byte on a kept
  connection) must be complete within `header_timeout` seconds, or the connection is
  closed (with a 408 when part of a head had come);
- beyond `max_connections` open connections, a request is answered 503 with an
  OperationOutcome and `Retry-After`, and its connection closed (uvicorn's own
  `limit_concurrency` answers in plain text);
- a connection whose response went out before its request body was complete is closed,
  so a client cannot keep it by trickling a body nobody reads.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from fhir_server.api.asgi import ServiceUnavailable, send_error
from fhir_server.metrics import connections


async def _over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    await send_error(
        send,
        ServiceUnavailable(
            "The server is at its connection limit; retry shortly", headers={"Retry-After": "1"}
        ),
        close=True,
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring; `guarded_protocol` makes one with its limits set."""

    header_timeout: float = 10.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_begun = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        connections.inc()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        connections.dec()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        self._head_begun = False
        if len(self.connections) <= self.max_connections:
            super().on_headers_complete()
            return
        self.logger.warning("Connection limit (%d) reached: 503", self.max_connections)
        app, self.app = self.app, _over_capacity  # uvicorn picks `self.app` in the call
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_response_complete(self) -> None:
        if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            self.transport.close()  # the rest of the body would arrive at its own pace
            return
        super().on_response_complete()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        idle = self.cycle is None or self.cycle.response_complete
        if self._head_begun and idle:
            self.transport.write(
                STATUS_LINE[408] + b"content-length: 0\r\nconnection: close\r\n\r\n"
            )
        self.transport.close()


def guarded_protocol(header_timeout: float, max_connections: int) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's `http=` with these limits."""
    if header_timeout <= 0 or max_connections <= 0:
        raise ValueError("the header timeout and the connection cap must be positive")
    attributes = {"header_timeout": header_timeout, "max_connections": max_connections}
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), attributes)
