"""How `fhir-server serve` runs uvicorn: the limits that keep one client from hurting others.

Besides the app's own middleware (hosts, CORS, body deadline and size, media types):
the guarded protocol (a deadline for request heads, a connection cap answered with 503),
uvicorn's keep-alive timeout, and no `server: uvicorn` banner.
"""

from __future__ import annotations

from typing import Any

import uvicorn
from starlette.types import ASGIApp

from fhir_server.api import workers as workers_module
from fhir_server.api.protocol import guarded_protocol
from fhir_server.settings import Settings

HEALTHCHECK_SECONDS = 60  # a worker loading its registries on a busy machine answers late


def uvicorn_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration for `app` under `settings`."""
    return uvicorn.Config(
        app,
        http=guarded_protocol(settings.header_timeout, settings.max_connections),
        **_options(settings),
    )


def _options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        "loop": "uvloop",
        "ws": "none",
        "server_header": False,
        "timeout_keep_alive": settings.keep_alive_timeout,
    }


def run(app: ASGIApp, settings: Settings) -> None:
    """Serve `app` until interrupted."""
    uvicorn.Server(uvicorn_config(app, settings)).run()


def run_workers(settings: Settings, workers: int) -> None:
    """Serve with `workers` processes on one listening socket until SIGTERM or SIGINT.

    uvicorn's supervisor binds the socket, starts the workers (each builds the app from
    the environment: `workers.app`), restarts one that dies and stops them all on a
    signal. The caller has put every setting the workers need into the environment."""
    uvicorn.run(
        workers_module.APP,
        timeout_worker_healthcheck=HEALTHCHECK_SECONDS,
        factory=True,
        workers=workers,
        http=workers_module.PROTOCOL,
        **_options(settings),
    )
