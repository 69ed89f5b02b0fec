"""`fhir-server audit verify` and `fhir-server audit export`: the audit trail offline.

`verify` recomputes the hash chain of the AuditEvent batches and checks every stored event
against it (see `fhir_server.audit.chain`): it prints each problem, naming its batch, and
exits 1 when there is one (0: intact; the head hash it prints can be kept elsewhere to
detect a cut-off tail later). With FHIR_AUDIT_SIGNING_KEY_FILE set, signatures are checked.
`export` writes the AuditEvents as NDJSON to stdout, optionally only those recorded at or
after `--since`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from fhir_server.settings import Settings

if TYPE_CHECKING:
    from fhir_server.audit.chain import Report

app = typer.Typer(help="The audit trail: verify its hash chain, export it", no_args_is_help=True)


@app.command()
def verify() -> None:
    """Check that no AuditEvent was changed, removed or inserted since it was written."""
    report, waiting = asyncio.run(_verify(Settings()))
    _say_pending(waiting)
    for problem in report.problems:
        typer.echo(problem)
    typer.echo(
        f"{report.batches} batch(es), {report.events} event(s), head {report.head}: "
        + ("TAMPERED" if report.problems else "intact"),
        err=True,
    )
    if report.problems:
        raise typer.Exit(1)


@app.command()
def export(
    since: Annotated[
        str | None, typer.Option(help="Only events recorded at or after this instant")
    ] = None,
) -> None:
    """Write the AuditEvents as NDJSON (one per line) to stdout."""
    count, waiting = asyncio.run(_export(Settings(), since))
    typer.echo(f"{count} AuditEvent(s) exported", err=True)
    _say_pending(waiting)


def _say_pending(waiting: int) -> None:
    if waiting:
        typer.echo(
            f"{waiting} read journal entr{'y' if waiting == 1 else 'ies'} not yet stored as "
            "AuditEvents (not in this answer): a running server stores them within "
            "FHIR_AUDIT_INDEX_SECONDS, a stopped one when it next runs",
            err=True,
        )


async def _verify(settings: Settings) -> tuple[Report, int]:
    from fhir_server.assembly import make_storage
    from fhir_server.audit.chain import verify as check
    from fhir_server.audit.journal import pending

    key = None
    if settings.audit_signing_key_file:
        with open(settings.audit_signing_key_file, "rb") as file:
            key = file.read().strip()
    storage = make_storage(settings)
    await storage.open()
    try:
        return await check(storage, key), await pending(storage)
    finally:
        await storage.close()


async def _export(settings: Settings, since: str | None) -> tuple[int, int]:
    import orjson

    from fhir_server.assembly import make_storage
    from fhir_server.audit.journal import pending

    storage = make_storage(settings)
    await storage.open()
    count = 0
    out = sys.stdout.buffer
    try:
        async for rec in storage.iter_current("AuditEvent"):
            if since and str(orjson.loads(rec.data).get("recorded", "")) < since:
                continue
            out.write(rec.data + b"\n")
            count += 1
        out.flush()
        return count, await pending(storage)
    finally:
        await storage.close()
