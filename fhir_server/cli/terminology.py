"""`fhir-server terminology ...`: load LOINC and SNOMED CT releases as CodeSystems.

Each command reads the release files (streamed, with a progress bar), then stores the
CodeSystem through the FHIR service as `PUT CodeSystem/<id>`: validated and versioned like
any other write, and in effect for the operations and searches at once. Importing again
replaces the earlier version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from fhir_server.errors import FhirError
from fhir_server.settings import Settings
from terminology.importers import ImportResult, ProgressCallback, import_loinc, import_snomed

app = typer.Typer(
    help="Import terminologies (LOINC, SNOMED CT) into the server's database", no_args_is_help=True
)

Importer = Callable[[ProgressCallback], ImportResult]


@app.command("import-loinc")
def loinc(
    path: Annotated[Path, typer.Argument(help="The LOINC table file (LoincTable/Loinc.csv)")],
    version: Annotated[str | None, typer.Option(help="LOINC version, e.g. 2.77")] = None,
) -> None:
    """Import Loinc.csv as the CodeSystem http://loinc.org (id `loinc`)."""
    _run("loinc", lambda progress: import_loinc(path, version=version, progress=progress))


@app.command("import-snomed")
def snomed(
    folder: Annotated[Path, typer.Argument(help="An RF2 release folder (its Snapshot files)")],
    version: Annotated[
        str | None, typer.Option(help="Version URI, or the release date YYYYMMDD")
    ] = None,
) -> None:
    """Import an RF2 snapshot as the CodeSystem http://snomed.info/sct (id `snomed-ct`)."""
    _run("snomed-ct", lambda progress: import_snomed(folder, version=version, progress=progress))


def _run(id: str, importer: Importer) -> None:
    with tqdm(desc="reading", unit=" rows", unit_scale=True) as bar:

        def progress(rows: int) -> None:
            bar.update(rows - bar.n)

        try:
            result = importer(progress)
        except (OSError, ValueError) as error:
            typer.echo(f"cannot import: {error}", err=True)
            raise typer.Exit(code=2) from None
    for problem in result.errors:
        typer.echo(f"skipped {problem}", err=True)
    try:
        status = asyncio.run(_store(id, {**result.code_system, "id": id}))
    except FhirError as error:
        typer.echo(f"could not store CodeSystem/{id}: {error.diagnostics}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(
        f"CodeSystem/{id}: {result.concepts} concepts from {result.rows} rows, "
        f"{len(result.errors)} skipped; stored ({status})"
    )
    raise typer.Exit(code=0 if not result.errors else 1)


async def _store(id: str, code_system: dict[str, Any]) -> int:
    from fhir_server.assembly import open_service
    from fhir_server.interactions.request import Request

    async with open_service(Settings()) as service:
        response = await service.handle(
            Request(
                "PUT", f"CodeSystem/{id}", body=code_system, headers={"prefer": "return=minimal"}
            )
        )
        return response.status
