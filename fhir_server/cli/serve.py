"""`fhir-server serve`: the HTTP server (FHIR API under /fhir) under uvicorn, and the
background duties (HL7 v2 MLLP listener...) its settings ask for.

With `--workers N` (FHIR_WORKERS; default: one per usable core) N processes serve HTTP on
the same port; the leader among them runs the background duties (see `assembly`)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from fhir_server.settings import Settings


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (FHIR_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (FHIR_PORT)")] = None,
    mllp_port: Annotated[
        int | None, typer.Option(help="HL7 v2 MLLP listener port (FHIR_MLLP_PORT; 0: none)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes (FHIR_WORKERS; default: one per usable core)"),
    ] = None,
) -> None:
    """Start the HTTP server (FHIR API under /fhir) and, if configured, the MLLP listener."""
    settings = Settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    if mllp_port is not None:
        settings.mllp_port = mllp_port
    settings.workers = workers or settings.workers or usable_cores()
    if settings.auth == "off" and not is_loopback(settings.host):
        print(
            f"Refusing to serve on {settings.host} with authorization off (FHIR_AUTH=off): "
            "that is for local experiments on a loopback address (127.0.0.1, ::1, "
            "localhost) only",
            file=sys.stderr,
        )
        raise typer.Exit(2)
    problem = startup_problem(settings)
    if problem:
        print(f"Cannot start: {problem}", file=sys.stderr)
        raise typer.Exit(2)
    if settings.storage == "sqlite":
        Path(settings.database).parent.mkdir(parents=True, exist_ok=True)
    if settings.workers == 1:
        from fhir_server.api.app import create_app
        from fhir_server.api.server import run

        run(create_app(settings), settings)
    else:
        serve_workers(settings)


def serve_workers(settings: Settings) -> None:
    """Several worker processes: the database and signing keys are made ready once, here,
    then each worker builds the app from the environment (the options above included)."""
    from fhir_server.api.server import run_workers
    from fhir_server.assembly import prepare

    os.environ.update(
        FHIR_HOST=settings.host,
        FHIR_PORT=str(settings.port),
        FHIR_MLLP_PORT=str(settings.mllp_port),
        FHIR_WORKERS=str(settings.workers),
    )
    asyncio.run(prepare(settings))
    run_workers(settings, settings.workers)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least one."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def startup_problem(settings: Settings) -> str | None:
    """What stops `serve` from starting, in one line: settings, files, the port."""
    from fhir_server.assembly import preflight

    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        return "FHIR_TLS_CERT_FILE and FHIR_TLS_KEY_FILE go together: set both or neither"
    if settings.metrics == "token" and not settings.metrics_token:
        return "FHIR_METRICS=token needs FHIR_METRICS_TOKEN"
    problem = preflight(settings)
    if problem:
        return problem
    return port_problem(settings.host, settings.port)


def port_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on (in use, not an address here), or None."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            return f"cannot listen on {host}:{port}: {error.strerror}"
    return None


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address to bind) only reaches this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
