"""`fhir-server blobs gc`: find, and with `--delete` remove, Binary content no version names.

Deleting a Binary keeps its blob (its history still reads it); a blob becomes garbage only
when no version of any Binary references it, e.g. after the history was purged, or when an
upload's Binary was never written (refused by validation or access policy). Blobs younger
than `--min-age` seconds are left alone: their Binary may be committing right now.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from fhir_server.settings import Settings

app = typer.Typer(help="Binary content in the blob store", no_args_is_help=True)


@app.command()
def gc(
    delete: Annotated[bool, typer.Option(help="Remove what is found (default: only list)")] = False,
    min_age: Annotated[
        float, typer.Option(help="Only blobs stored at least this many seconds ago")
    ] = 3600.0,
) -> None:
    """List (or remove) the blobs that no version of any Binary references."""
    found = asyncio.run(_collect(Settings(), delete, min_age))
    for name in found:
        typer.echo(name)
    verb = "removed" if delete else "unreferenced (use --delete to remove)"
    typer.echo(f"{len(found)} blob(s) {verb}", err=True)


async def _collect(settings: Settings, delete: bool, min_age: float) -> list[str]:
    from fhir_server.assembly import make_storage
    from fhir_server.interactions.binary import unreferenced

    storage = make_storage(settings)
    await storage.open()
    try:
        found = await unreferenced(storage, min_age)
        if delete:
            blobs = storage.blobs()
            for name in found:
                await blobs.remove(name)
        return found
    finally:
        await storage.close()
