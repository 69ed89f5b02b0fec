"""`fhir-server reindex`: recompute the search index of stored resources, resumable.

After a custom SearchParameter is added, resources stored before it lack its index values;
this walks every type (or the `--type`s) through `interactions.reindex`, in place (no new
versions), saving a checkpoint file after every batch so that a stopped run resumes.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from tqdm import tqdm

from fhir_server.settings import Settings

if TYPE_CHECKING:
    from fhir_server.interactions.reindex import Checkpoint


def reindex_command(
    type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Resource type (repeatable; default: every type)"),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Progress file to resume from (default: beside the SQLite database)"),
    ] = None,
    restart: Annotated[bool, typer.Option(help="Ignore a saved checkpoint")] = False,
) -> None:
    """Recompute the search index of stored resources (after adding a SearchParameter)."""
    settings = Settings()
    if checkpoint is None:
        base = settings.database if settings.storage == "sqlite" else "fhir"
        checkpoint = Path(base + ".reindex.json")
    try:
        asyncio.run(reindex_types(settings, type or [], checkpoint, restart=restart))
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None


async def reindex_types(
    settings: Settings, types: list[str], checkpoint: Path, *, restart: bool = False
) -> Checkpoint:
    """Re-index `types` (every type when empty), resuming from the `checkpoint` file.

    The file is rewritten after every batch and removed once the run completes.
    """
    from fhir_server.assembly import open_service
    from fhir_server.interactions.reindex import Checkpoint, reindex

    state = Checkpoint()
    if checkpoint.exists() and not restart:
        state = Checkpoint.from_json(orjson.loads(checkpoint.read_bytes()))
        tqdm.write(
            f"resuming: {len(state.done)} type(s) done, {state.type or '-'} "
            f"after {state.last_id or '-'}",
            file=sys.stderr,
        )

    def save(current: Checkpoint) -> None:
        partial = checkpoint.with_suffix(checkpoint.suffix + ".tmp")
        partial.write_bytes(orjson.dumps(current.to_json()))
        partial.replace(checkpoint)

    async with open_service(settings) as service:
        unknown = [t for t in types if t not in service.resource_types]
        if unknown:
            raise ValueError(f"unknown resource type(s): {', '.join(unknown)}")
        with tqdm(unit=" resources", desc="reindexing") as bar:

            def progress(type: str, n: int) -> None:
                bar.set_postfix_str(type)
                bar.update(n)

            state = await reindex(
                service,
                types or sorted(service.resource_types),
                state,
                save=save,
                progress=progress,
            )
    checkpoint.unlink(missing_ok=True)
    for type, count in sorted(state.counts.items()):
        print(f"{type}: {count}")
    return state
