"""Pure-ASGI middleware, one concern each."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.api.asgi import send_error
from fhir_server.errors import PayloadTooLarge


class BodyLimitMiddleware:
    """Refuse request bodies over `limit` bytes with 413, by Content-Length or as they stream.

    A request `is_raw(method, path, content_type)` accepts (a raw Binary upload) has its
    own, larger limit `raw_limit`."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        raw_limit: int | None = None,
        is_raw: Callable[[str, str, str | None], bool] | None = None,
    ) -> None:
        if limit <= 0 or (raw_limit is not None and raw_limit <= 0):
            raise ValueError("the body limit must be positive")
        self.app = app
        self.limit = limit
        self.raw_limit = raw_limit or limit
        self.is_raw = is_raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        limit = self._limit(scope, headers.get(b"content-type"))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_error(send, PayloadTooLarge(self._message(limit)), close=True)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(self._message(limit))
            return message

        await self.app(scope, limited, send)

    def _limit(self, scope: Scope, content_type: bytes | None) -> int:
        if self.is_raw is None:
            return self.limit
        media = content_type.decode("latin-1") if content_type else None
        return self.raw_limit if self.is_raw(scope["method"], scope["path"], media) else self.limit

    def _message(self, limit: int) -> str:
        return f"The request body is larger than the limit of {limit} bytes"
