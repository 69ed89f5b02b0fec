"""The `fhir-server` command: serve, load, export, terminology import."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from adapters.hl7v2.cli import app as hl7_app
from fhir_server.settings import Settings
from terminology.cli import app as terminology_app

app = typer.Typer(help="FHIR R4 interoperability server", no_args_is_help=True,
                  add_completion=False)
app.add_typer(terminology_app, name="terminology")
app.add_typer(hl7_app, name="hl7")


@app.command()
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


@app.command()
def load(
    paths: Annotated[list[Path], typer.Argument(help="Bundle / NDJSON files or folders")],
) -> None:
    """Load Bundles (transaction, batch, collection) and NDJSON files into the database."""
    from fhir_server.loader import load_paths

    summary = asyncio.run(load_paths(Settings(), paths))
    raise typer.Exit(code=0 if summary.failed == 0 else 1)


@app.command()
def export(
    type: Annotated[list[str], typer.Option("--type", help="Resource type (repeatable)")],
    out: Annotated[Path, typer.Option("--out", help="Folder for <Type>.ndjson files")],
) -> None:
    """Export current resources as NDJSON, one file per type, streamed."""
    from fhir_server.loader import export_types

    asyncio.run(export_types(Settings(), type, out))


@app.command(name="reindex")
def reindex_command(
    type: Annotated[list[str] | None, typer.Option("--type", help="Resource type (repeatable; "
                                                   "default: every type)")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Progress file to resume from "
                                                    "(default: beside the SQLite database)")
                          ] = None,
    restart: Annotated[bool, typer.Option(help="Ignore a saved checkpoint")] = False,
) -> None:
    """Recompute the search index of stored resources (after adding a SearchParameter)."""
    from fhir_server.loader import reindex_types

    settings = Settings()
    if checkpoint is None:
        base = settings.database if settings.storage == "sqlite" else "fhir"
        checkpoint = Path(base + ".reindex.json")
    try:
        asyncio.run(reindex_types(settings, type or [], checkpoint, restart=restart))
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None


if __name__ == "__main__":
    app()
