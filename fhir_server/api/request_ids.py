"""`X-Request-ID` on every response, and in every log line of the request.

Outermost middleware: the id is taken from the request's `X-Request-ID` when it is a sane
token (see `fhir_server.logs.new_request_id`) or made up, set for the request's log records
and OperationOutcomes, and sent back on the response.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.api.asgi import header
from fhir_server.logs import new_request_id, request_id

HEADER = b"x-request-id"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header(scope.get("headers"), HEADER)
        current = new_request_id(given.decode("latin-1") if given else None)
        token = request_id.set(current)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                headers.append((HEADER, current.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
