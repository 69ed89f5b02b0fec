"""What each worker process of `serve --workers N` imports: the app factory and protocol.

uvicorn starts N processes that share the listening socket its parent bound; each imports
the app by name (`app`, a factory) and builds it from the environment (FHIR_*), so every
worker opens its own storage connections, its own copy of the search registry and
terminology, and joins the leader election (see `fhir_server.storage.leadership`).
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp

from fhir_server.api.protocol import guarded_protocol
from fhir_server.settings import Settings

APP = f"{__name__}:app"
PROTOCOL = f"{__name__}:GuardedProtocol"


def app() -> ASGIApp:
    """The server's ASGI app, configured from the environment."""
    from fhir_server.api.app import create_app

    return create_app(Settings())


def __getattr__(name: str) -> Any:
    """`GuardedProtocol`: the guarded HTTP protocol with the environment's limits."""
    if name == "GuardedProtocol":
        settings = Settings()
        return guarded_protocol(settings.header_timeout, settings.max_connections)
    raise AttributeError(name)
