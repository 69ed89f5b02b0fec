"""A deadline for each request body: a client that trickles its body gets 408 and is closed.

A slow client holds a connection and a task for as long as its body takes; a hundred of
them hold the server. The body must arrive within `timeout` seconds, extended by one second
per `min_rate` bytes received (Apache's mod_reqtimeout `body=...,MinRate=...`), so a large
upload at a decent rate always finishes and a trickle never lasts. The request head has its
own deadline in the protocol (`fhir_server.api.protocol`).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.api.asgi import RequestTimeout

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyTimeoutMiddleware:
    """Raise `RequestTimeout` (408, connection closed) from `receive` past the body deadline."""

    def __init__(self, app: ASGIApp, timeout: float, min_rate: int) -> None:
        if timeout <= 0 or min_rate <= 0:
            raise ValueError("the body timeout and minimum rate must be positive")
        self.app = app
        self.timeout = timeout
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)  # no other request has its body read
            return
        deadline = asyncio.get_running_loop().time() + self.timeout
        complete = False

        async def timed() -> Message:
            nonlocal deadline, complete
            if complete:  # later receives wait for a disconnect: no deadline on those
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The request body did not arrive in time (at least {self.min_rate} "
                    f"bytes/s after {self.timeout:g} s)",
                    headers={"Connection": "close"},
                ) from None
            deadline += len(message.get("body", b"")) / self.min_rate
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed, send)
