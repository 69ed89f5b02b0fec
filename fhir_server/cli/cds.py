"""`fhir-server cds ...`: the CDS clients (EHRs) that may call the CDS services, and the
feedback they sent on cards.

- `client add --iss ISS (--jwks-url URL... | --jwks-file FILE) [--fhir-server URL...]`:
  register a CDS client by the `iss` of its JWTs. Its keys are read from the first JWKS
  URL (each URL given is also a `jku` its JWTs may name) or from the file (public keys
  only). `--fhir-server`: a FHIR server (not this one) that prefetch data may be fetched
  from with the client's `fhirAuthorization`;
- `client list`, `client remove ISS`;
- `feedback list [--service ID] [--outcome accepted|overridden]`: one JSON object a line.

They use the auth store of the FHIR_* settings; the server may be running meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from fhir_server.settings import Settings

if TYPE_CHECKING:
    from cds_hooks.store import CdsStore

app = typer.Typer(help="CDS Hooks: clients and card feedback", no_args_is_help=True)
client_app = typer.Typer(help="CDS clients allowed to call the services", no_args_is_help=True)
feedback_app = typer.Typer(help="What clients reported on cards", no_args_is_help=True)
app.add_typer(client_app, name="client")
app.add_typer(feedback_app, name="feedback")
T = TypeVar("T")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _run(work: Callable[[CdsStore], T]) -> T:
    """`work(store)` in a worker thread, the auth store open meanwhile."""
    from cds_hooks.store import CdsStore
    from fhir_server.assembly import open_auth

    settings = Settings()
    if settings.storage == "sqlite" and not settings.auth_database:
        Path(settings.database).parent.mkdir(parents=True, exist_ok=True)

    async def run() -> T:
        async with open_auth(settings) as auth:
            return await asyncio.to_thread(work, CdsStore(auth.store.documents))

    return asyncio.run(run())


@client_app.command("add")
def client_add(
    iss: Annotated[str, typer.Option(help="The iss of the client's JWTs")],
    jwks_url: Annotated[
        list[str] | None,
        typer.Option("--jwks-url", help="Where the client publishes its JWKS (repeatable)"),
    ] = None,
    jwks_file: Annotated[
        Path | None, typer.Option("--jwks-file", help="A file with the client's public JWKS")
    ] = None,
    fhir_server: Annotated[
        list[str] | None,
        typer.Option("--fhir-server", help="A FHIR server prefetch may come from (repeatable)"),
    ] = None,
) -> None:
    """Allow a CDS client to call the services."""
    from cds_hooks.store import CdsClient, public_jwks

    urls = tuple(jwks_url or ())
    if bool(urls) == bool(jwks_file):
        raise _fail("give --jwks-url URL or --jwks-file FILE")
    if any(not u.startswith(("https://", "http://")) for u in (*urls, *(fhir_server or ()))):
        raise _fail("URLs must be http(s) URLs")
    try:
        jwks = public_jwks(json.loads(jwks_file.read_text())) if jwks_file else None
        client = CdsClient(
            iss=iss,
            jwks=jwks,
            jwks_urls=urls,
            fhir_servers=tuple(u.rstrip("/") for u in fhir_server or ()),
        )
        _run(lambda store: store.add_client(client))
    except (OSError, ValueError) as error:
        raise _fail(str(error)) from None
    print(f"added CDS client {iss}")


@client_app.command("list")
def client_list() -> None:
    """The registered CDS clients: iss, where their keys are, their FHIR servers."""
    for client in _run(lambda store: store.clients()):
        keys = " ".join(client.jwks_urls) or "inline JWKS"
        print(f"{client.iss}\t{keys}\t{' '.join(client.fhir_servers) or '-'}")


@client_app.command("remove")
def client_remove(iss: Annotated[str, typer.Argument(help="The client's iss")]) -> None:
    """Refuse the client's calls from now on."""
    if not _run(lambda store: store.remove_client(iss)):
        raise _fail(f"no CDS client {iss}")
    print(f"removed CDS client {iss}")


@feedback_app.command("list")
def feedback_list(
    service: Annotated[str | None, typer.Option(help="Only this service's cards")] = None,
    outcome: Annotated[
        str | None, typer.Option(help="Only this outcome: accepted or overridden")
    ] = None,
) -> None:
    """Feedback records, oldest first, one JSON object a line."""
    if outcome not in (None, "accepted", "overridden"):
        raise _fail("--outcome is accepted or overridden")
    rows: list[dict[str, Any]] = _run(lambda store: store.feedback(service, outcome))
    for row in rows:
        print(json.dumps(row, sort_keys=True))
