"""How `fhir-server serve` runs uvicorn: the limits that keep one client from hurting others.

Besides the app's own middleware (hosts, CORS, body deadline and size, media types):
the guarded protocol (a deadline for request heads, a connection cap answered with 503),
uvicorn's keep-alive timeout, and no `server: uvicorn` banner.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from fhir_server import logs
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
        "ws": "websockets-sansio",  # only the Subscription channel (/subscriptions/websocket)
        "ws_max_size": 64 * 1024,  # clients send one short bind message
        "server_header": False,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "log_config": None,  # fhir_server.logs.configure sets the handlers (text or JSON)
        "timeout_graceful_shutdown": max(1, round(settings.shutdown_timeout)),
        "ssl_certfile": settings.tls_cert_file,
        "ssl_keyfile": settings.tls_key_file,
    }


def run(app: ASGIApp, settings: Settings) -> None:
    """Serve `app` until interrupted."""
    logs.configure(settings.log_level, settings.log_format)
    uvicorn.Server(uvicorn_config(app, settings)).run()


def run_workers(settings: Settings, workers: int) -> None:
    """Serve with `workers` processes on one listening socket until SIGTERM or SIGINT.

    uvicorn's supervisor binds the socket, starts the workers (each builds the app from
    the environment: `workers.app`), restarts one that dies and stops them all on a
    signal. The caller has put every setting the workers need into the environment.

    The workers' metrics are summed through a fresh directory (prometheus-client's
    multi-process mode, `PROMETHEUS_MULTIPROC_DIR`) that lives as long as the server."""
    logs.configure(settings.log_level, settings.log_format)
    with tempfile.TemporaryDirectory(prefix="fhir-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        _run_workers(settings, workers)


def _run_workers(settings: Settings, workers: int) -> None:
    uvicorn.run(
        workers_module.APP,
        timeout_worker_healthcheck=HEALTHCHECK_SECONDS,
        factory=True,
        workers=workers,
        http=workers_module.PROTOCOL,
        **_options(settings),
    )
