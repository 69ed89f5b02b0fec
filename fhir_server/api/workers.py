"""What each worker process of `serve --workers N` imports: the app factory and protocol.

uvicorn starts N processes that share the listening socket its parent bound; each imports
the app by name (`app`, a factory) and builds it from the environment (FHIR_*), so every
worker opens its own storage connections, its own copy of the search registry and
terminology, and joins the leader election (see `fhir_server.storage.leadership`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from starlette.types import ASGIApp

from fhir_server import logs
from fhir_server.api.protocol import guarded_protocol
from fhir_server.settings import Settings

APP = f"{__name__}:app"
PROTOCOL = f"{__name__}:GuardedProtocol"


ORPHAN_CHECK_SECONDS = 1.0


def app() -> ASGIApp:
    """The server's ASGI app, configured from the environment."""
    from fhir_server.api.app import create_app

    _stop_when_orphaned(os.getppid())
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)


def _stop_when_orphaned(parent: int) -> None:
    """SIGTERM this worker (a graceful stop) once its supervisor is gone: killed with
    SIGKILL, it cannot stop its workers, which would otherwise keep the port and the
    leader lease with nobody to restart or stop them."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def __getattr__(name: str) -> Any:
    """`GuardedProtocol`: the guarded HTTP protocol with the environment's limits."""
    if name == "GuardedProtocol":
        settings = Settings()
        return guarded_protocol(settings.header_timeout, settings.max_connections)
    raise AttributeError(name)
