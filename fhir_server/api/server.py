"""How `fhir-server serve` runs uvicorn: the limits that keep one client from hurting others.

Besides the app's own middleware (hosts, CORS, body deadline and size, media types):
the guarded protocol (a deadline for request heads, a connection cap answered with 503),
uvicorn's keep-alive timeout, and no `server: uvicorn` banner.
"""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp

from fhir_server import logs
from fhir_server.api.protocol import guarded_protocol
from fhir_server.settings import Settings


def uvicorn_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration for `app` under `settings`."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # fhir_server.logs.configure sets the handlers (text or JSON)
        access_log=False,
        loop="uvloop",
        http=guarded_protocol(settings.header_timeout, settings.max_connections),
        ws="none",
        server_header=False,
        timeout_keep_alive=settings.keep_alive_timeout,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
    )


def run(app: ASGIApp, settings: Settings) -> None:
    """Serve `app` until interrupted."""
    logs.configure(settings.log_level, settings.log_format)
    uvicorn.Server(uvicorn_config(app, settings)).run()
