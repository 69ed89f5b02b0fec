"""`fhir-server auth user ...`: the people who sign in to approve SMART apps.

- `add NAME --role ROLE [--fhir-user Practitioner/123]`: the password is asked for at a
  prompt (twice, not echoed) or read from the first line of standard input with
  `--password-stdin`; never from an argument, where `ps` and shell history would keep it;
- `list`: name, role, FHIR user and id of every user;
- `remove NAME`.

Roles: clinician, nurse, front-desk, patient, admin (see `fhir_server.auth.roles`). The
users live in the auth database of the FHIR_* settings (`<database>.auth.db`, or the
MongoDB collection `auth_users`); the server may be running meanwhile.

`user_app` is the `user` group; `app` is a minimal `auth` group holding it, for as long as
no other module provides `fhir-server auth`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from fhir_server.settings import Settings

T = TypeVar("T")

app = typer.Typer(help="SMART on FHIR authorization: users", no_args_is_help=True)
user_app = typer.Typer(help="Users who sign in to approve apps", no_args_is_help=True)
app.add_typer(user_app, name="user")


def _run(work: Callable[..., Awaitable[T]]) -> T:
    from fhir_server.auth.users import open_user_store

    async def main() -> T:
        async with open_user_store(Settings()) as store:
            return await work(store)

    return asyncio.run(main())


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@user_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The name the user signs in with")],
    role: Annotated[str, typer.Option(help="clinician, nurse, front-desk, patient or admin")],
    fhir_user: Annotated[
        str | None,
        typer.Option(
            "--fhir-user",
            help="Who the user is: Practitioner/ID, Patient/ID, RelatedPerson/ID or Person/ID",
        ),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from the first line of standard input"
        ),
    ] = False,
) -> None:
    """Add a user (the password is asked for, or read with --password-stdin)."""
    from fhir_server.auth.users import UserError, new_user

    try:
        user = new_user(name, _password(password_stdin), role, fhir_user)
        _run(lambda store: store.add_user(user))
    except UserError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    print(f"added user {user.name} ({user.role}), id {user.id}")


@user_app.command("list")
def list_users() -> None:
    """List the users: name, role, FHIR user, id."""
    users = _run(lambda store: store.list_users())
    for user in users:
        print(f"{user.name}\t{user.role}\t{user.fhir_user or '-'}\t{user.id}")
    if not users:
        print("no users")


@user_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="The user's name")]) -> None:
    """Remove a user (tokens they approved stay valid until they expire or are revoked)."""
    if not _run(lambda store: store.remove_user(name)):
        typer.echo(f"error: no user named {name!r}", err=True)
        raise typer.Exit(code=2)
    print(f"removed user {name}")
