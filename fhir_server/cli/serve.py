"""`fhir-server serve`: the HTTP server (FHIR API under /fhir) under uvicorn, and the
background duties (HL7 v2 MLLP listener...) its settings ask for."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fhir_server.settings import Settings


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (FHIR_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (FHIR_PORT)")] = None,
    mllp_port: Annotated[int | None, typer.Option(help="HL7 v2 MLLP listener port "
                                                  "(FHIR_MLLP_PORT; 0: none)")] = None,
) -> None:
    """Start the HTTP server (FHIR API under /fhir) and, if configured, the MLLP listener."""
    from fhir_server.api.app import create_app
    from fhir_server.api.server import run

    settings = Settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    if mllp_port is not None:
        settings.mllp_port = mllp_port
    if settings.storage == "sqlite":
        Path(settings.database).parent.mkdir(parents=True, exist_ok=True)
    run(create_app(settings), settings)
