"""`fhir-server deidentify`: de-identify a folder of NDJSON files (an export) into another.

`--profile safe-harbor` removes or generalizes the HIPAA Safe Harbor identifiers;
`--profile date-shift` shifts each patient's dates by one offset instead of cutting them
to the year. Ids, references and other identifiers become keyed pseudonyms: with
`--key-file` (at least 32 bytes) the same input gives the same pseudonyms and offsets in
every run; without it each run draws a fresh key, never written anywhere. What changed
is counted by element path in `report.json` in the output folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from fhir_server.deidentify import PROFILES, Deidentifier, deidentify_dir

MIN_KEY_BYTES = 32


def deidentify(
    profile: Annotated[str, typer.Option(help=f"One of: {', '.join(PROFILES)}")],
    source: Annotated[
        Path, typer.Option("--in", help="Folder of NDJSON files", exists=True, file_okay=False)
    ],
    target: Annotated[Path, typer.Option("--out", help="Folder to write (created)")],
    key_file: Annotated[
        Path | None,
        typer.Option(help="Pseudonym key (32+ bytes) for results stable across runs"),
    ] = None,
) -> None:
    """De-identify the NDJSON files of a folder into another folder."""
    if profile not in PROFILES:
        raise typer.BadParameter(f"'{profile}' is not one of {', '.join(PROFILES)}")
    key = None
    if key_file is not None:
        try:
            key = key_file.read_bytes()
        except OSError as error:
            raise typer.BadParameter(f"{key_file} cannot be read: {error.strerror}") from None
        if len(key) < MIN_KEY_BYTES:
            raise typer.BadParameter(f"the key file needs at least {MIN_KEY_BYTES} bytes")
    if target.resolve() == source.resolve():
        raise typer.BadParameter("--out must differ from --in")
    run = Deidentifier(profile, key)
    try:
        report = deidentify_dir(source, target, run)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    summary = {"resources": report["resources"], "dropped": report["dropped"]}
    typer.echo(orjson.dumps(summary).decode())
