"""`fhir-server keys ...`: the master keys of encryption at rest.

- `keys generate FILE`: a new key file (one key, active), readable by its owner only;
  point `FHIR_ENCRYPTION_KEY_FILE` at it to turn encryption at rest on.
- `keys rotate`: add a new master key to `FHIR_ENCRYPTION_KEY_FILE` and make it active
  (older keys stay in the file, for older backups), then re-wrap the database's data keys
  with it and start a new data key for new writes, in one step. Servers keep running:
  they hold their data keys unwrapped, and read what the new data key seals by reading
  the keyring and the key file again. Run one rotation at a time.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from fhir_server.settings import Settings

app = typer.Typer(help="Master keys of encryption at rest", no_args_is_help=True)


@app.command()
def generate(file: Annotated[Path, typer.Argument(help="The key file to create")]) -> None:
    """Write a new key file with one fresh master key (refuses to overwrite one)."""
    from fhir_server.storage.encryption import MasterKeys

    if file.exists():
        typer.echo(f"{file} exists: not overwritten", err=True)
        raise typer.Exit(2)
    keys = MasterKeys("", {}, file).with_new_key()
    keys.save(file)
    typer.echo(f"master key {keys.active} written to {file}", err=True)


@app.command()
def rotate() -> None:
    """Make a new master key active and re-wrap the database's data keys with it."""
    from fhir_server.storage.encryption import EncryptionKeyError

    settings = Settings()
    if not settings.encryption_key_file:
        typer.echo(
            "keys rotate needs FHIR_ENCRYPTION_KEY_FILE (a key file it can add to)", err=True
        )
        raise typer.Exit(2)
    try:
        active, data_key = asyncio.run(_rotate(settings, Path(settings.encryption_key_file)))
    except EncryptionKeyError as error:
        print(f"Cannot rotate: {error}", file=sys.stderr)
        raise typer.Exit(2) from None
    typer.echo(f"master key {active} is active; data keys re-wrapped; new writes use {data_key}")


async def _rotate(settings: Settings, path: Path) -> tuple[str, str]:
    from fhir_server.assembly import make_storage
    from fhir_server.storage.encryption import MasterKeys, open_data_keys, rotate

    old = MasterKeys.from_file(path)
    storage = make_storage(settings)
    await storage.open()
    try:
        await open_data_keys(storage, old)  # checks the key first (creates them if new)
        new = old.with_new_key()
        new.save(path)  # first: a crash after this leaves both keys in the file
        keys = await rotate(storage, old, new)
        return new.active, keys.active
    finally:
        await storage.close()
