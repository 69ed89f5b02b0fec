"""What the pure-ASGI middleware share: answering with an OperationOutcome before the app.

The app renders errors through its exception handler; middleware that refuses a request
before the app sees it answers here, in JSON (the client's `Accept` is not known yet).
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from starlette.types import Send

from fhir_server.errors import FhirError
from fhir_server.logs import with_request_id

FHIR_JSON = b"application/fhir+json; charset=utf-8"


class RequestTimeout(FhirError):
    """408: the client was too slow to send its request."""

    status, code = 408, "timeout"


class ServiceUnavailable(FhirError):
    """503: the server is at its connection cap; try again shortly."""

    status, code = 503, "transient"


async def send_error(send: Send, error: FhirError, *, close: bool = False) -> None:
    """Send `error` as a complete FHIR JSON response; `close` ends the connection after it."""
    body = orjson.dumps(with_request_id(error.outcome()))
    headers = [(b"content-type", FHIR_JSON), (b"content-length", str(len(body)).encode())]
    headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def header(scope_headers: Iterable[tuple[bytes, bytes]] | None, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case) in an ASGI scope's header list."""
    for key, value in scope_headers or ():
        if key == name:
            return bytes(value)
    return None
