"""`fhir-server auth ...`: the authorization server's clients, keys, and a token for curl.

- `client add --name N --redirect-uri URI... (--public | --secret | --jwks-url URL |
  --jwks FILE) --scopes "..."`: register an app or backend system; prints its client_id
  (and, with --secret, the secret: once, it is stored hashed);
- `client list`, `client remove ID`;
- `client registration-token [--expires-in SECONDS]`: print an initial access token for
  dynamic registration (`POST /auth/register`, RFC 7591; stored hashed, default 1 day);
- `key rotate`: a new signing key signs from now on; older keys verify until they expire
  (a running server picks the new key up within a minute);
- `token --scope "system/*.*" [--client ID]`: print a system access token (at most 5
  minutes) for curl, signed with the server's keys. An operator command: it needs the
  database, not a client secret. Without --client it uses the built-in local admin client,
  created on first use, which no one can use at the token endpoint (it has no keys).

The commands use the auth store of the FHIR_* settings (FHIR_AUTH_DATABASE, or
`<database>.auth.db` beside the SQLite database); the server may be running meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fhir_server.settings import Settings

if TYPE_CHECKING:
    from fhir_server.assembly import Auth

app = typer.Typer(help="SMART authorization: clients, signing keys, tokens", no_args_is_help=True)
client_app = typer.Typer(help="Registered SMART apps and backend systems", no_args_is_help=True)
key_app = typer.Typer(help="The server's token-signing keys", no_args_is_help=True)
app.add_typer(client_app, name="client")
app.add_typer(key_app, name="key")

LOCAL_ADMIN = "local-admin"


@asynccontextmanager
async def _auth(settings: Settings) -> AsyncIterator[Auth]:
    from fhir_server.assembly import open_auth

    if settings.storage == "sqlite" and not settings.auth_database:
        Path(settings.database).parent.mkdir(parents=True, exist_ok=True)
    async with open_auth(settings) as auth:
        yield auth


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


@client_app.command("add")
def client_add(
    name: Annotated[str, typer.Option(help="What users see on the consent page")],
    scopes: Annotated[
        str,
        typer.Option(
            help="Scopes the client may receive, space-separated "
            "(e.g. 'launch/patient openid fhirUser patient/*.rs')"
        ),
    ],
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option("--redirect-uri", help="A redirect URI (repeatable; exact match)"),
    ] = None,
    public: Annotated[
        bool, typer.Option("--public", help="A public app (PKCE, no secret)")
    ] = False,
    secret: Annotated[
        bool, typer.Option("--secret", help="A confidential app with a client secret")
    ] = False,
    jwks_url: Annotated[
        str | None, typer.Option(help="The client's JWKS URL (private_key_jwt)")
    ] = None,
    jwks: Annotated[
        Path | None, typer.Option(help="A file with the client's JWKS (private_key_jwt)")
    ] = None,
    jku: Annotated[
        list[str] | None,
        typer.Option(help="A jku URL the client may name in its assertions (repeatable)"),
    ] = None,
) -> None:
    """Register a client; prints its client_id (and its secret, once, with --secret)."""
    from fhir_server.auth.clients import new_client

    kinds = [
        k
        for k, on in (
            ("public", public),
            ("symmetric", secret),
            ("asymmetric", bool(jwks_url or jwks)),
        )
        if on
    ]
    if len(kinds) != 1:
        raise _fail("choose one of --public, --secret, --jwks-url URL or --jwks FILE")
    try:
        inline = json.loads(jwks.read_text()) if jwks else None
        doc, client_secret = new_client(
            name=name,
            kind=kinds[0],
            redirect_uris=redirect_uri or [],
            scopes=scopes.split(),
            jwks_url=jwks_url,
            jwks=inline,
            jku=jku,
        )
    except (OSError, ValueError) as error:
        raise _fail(str(error)) from None

    async def add(auth: Auth) -> None:
        await asyncio.to_thread(auth.store.add_client, doc)

    _run(add)
    print(f"client_id: {doc['id']}")
    if client_secret:
        print(f"client_secret: {client_secret}  (shown once)")


@client_app.command("list")
def client_list() -> None:
    """The registered clients: id, kind, name, scopes, redirect URIs."""

    async def rows(auth: Auth) -> list[dict[str, Any]]:
        return await asyncio.to_thread(auth.store.list_clients)

    for doc in _run(rows):
        uris = " ".join(doc.get("redirect_uris", [])) or "-"
        print(f"{doc['id']}\t{doc['kind']}\t{doc['name']}\t{' '.join(doc['scopes'])}\t{uris}")


@client_app.command("remove")
def client_remove(client_id: Annotated[str, typer.Argument(help="The client_id")]) -> None:
    """Remove a client: it can no longer authenticate or refresh."""

    async def remove(auth: Auth) -> bool:
        return await asyncio.to_thread(auth.store.remove_client, client_id)

    if not _run(remove):
        raise _fail(f"no client {client_id}")
    print(f"removed {client_id}")


@client_app.command("registration-token")
def client_registration_token(
    expires_in: Annotated[
        int,
        typer.Option(
            min=60,
            max=365 * 86400,
            help=("Seconds the token may register clients (default: one day)"),
        ),
    ] = 86400,
) -> None:
    """Print a token for POST /auth/register (Authorization: Bearer ...); shown once."""
    from fhir_server.auth.registration import new_registration_token

    async def issue(auth: Auth) -> str:
        return await asyncio.to_thread(new_registration_token, auth.store, expires_in)

    print(_run(issue))


@key_app.command("rotate")
def key_rotate() -> None:
    """Sign with a new key from now on; prints its kid."""

    async def rotate(auth: Auth) -> str:
        return await auth.keys.rotate()

    print(_run(rotate))


@app.command("token")
def token(
    scope: Annotated[
        str,
        typer.Option(
            help="System scopes, e.g. 'system/*.*' or 'system/Patient.rs system/Observation.rs'"
        ),
    ],
    client: Annotated[
        str | None,
        typer.Option(help="A registered backend client (default: the built-in local admin client)"),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="The FHIR base the token is for (default: "
            "FHIR_BASE_URL, else http://HOST:PORT/fhir)"
        ),
    ] = None,
) -> None:
    """Print a system access token for curl: TOKEN=$(fhir-server auth token --scope ...)."""
    settings = Settings()
    base = base_url or settings.base_url or f"http://{settings.host}:{settings.port}/fhir"

    async def mint(auth: Auth) -> str:
        return await asyncio.to_thread(mint_token, auth, scope, client, base)

    try:
        print(_run(mint, settings))
    except ValueError as error:
        raise _fail(str(error)) from None


def mint_token(auth: Auth, scope: str, client_id: str | None, base: str) -> str:
    """A backend access token for `client_id` (or the local admin client) and `scope`."""
    from fhir_server.auth.clients import Client

    doc = auth.store.get_client(client_id) if client_id else _local_admin(auth)
    if doc is None:
        raise ValueError(f"no client {client_id}")
    found = Client(doc)
    if not found.check_grant_type("client_credentials") and found.client_id != LOCAL_ADMIN:
        raise ValueError(f"client {found.client_id} is not a backend (asymmetric) client")
    requested = scope.split()
    granted = found.get_allowed_scope(" ".join(s for s in requested if s.startswith("system/")))
    if not granted or len(granted.split()) != len(requested):
        raise ValueError(
            f"client {found.client_id} may not receive: {scope} (system scopes "
            f"within {' '.join(found.scopes)})"
        )
    urls = auth.server.urls(base)
    return str(auth.server.core.issuer.issue(urls, found, None, granted)["access_token"])


def _local_admin(auth: Auth) -> dict[str, Any]:
    """The built-in operator client: every system scope, no keys (no token endpoint use)."""
    doc = auth.store.get_client(LOCAL_ADMIN)
    if doc is None:
        from fhir_server.auth.clients import new_client

        doc, _ = new_client(
            name="Local administrator (fhir-server auth token)",
            kind="asymmetric",
            redirect_uris=[],
            scopes=["system/*.*"],
            jwks={"keys": []},
            client_id=LOCAL_ADMIN,
        )
        doc["grant_types"] = []
        auth.store.add_client(doc)
    return doc


def _run(work: Any, settings: Settings | None = None) -> Any:
    async def run() -> Any:
        async with _auth(settings or Settings()) as auth:
            return await work(auth)

    return asyncio.run(run())
