"""`fhir-server hl7 ...`: the operator's view of the HL7 v2 inbox, and a sender.

- `dead-letters [--all]`: the messages that failed (inbound AE / internal errors, outbound
  deliveries given up), one line each;
- `show ID`: one dead letter with its message and the ACK it got;
- `replay ID`: an inbound letter is processed again now (one FHIR transaction through the
  service, as the listener does); an outbound letter goes back to its queue, and the
  running server's dispatcher sends it. A replay that fails again files a new letter;
- `send FILE --to HOST:PORT`: send the messages of an ER7 file over MLLP, print each ACK.

The commands read the inbox file of the FHIR_* settings (FHIR_HL7_INBOX or
`<database>.hl7inbox.db`); the server may be running meanwhile.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Annotated

import typer

from adapters.hl7v2.ack import read_ack
from adapters.hl7v2.inbox import DeadLetter, InboxFile, inbox_path
from fhir_server.settings import Settings

app = typer.Typer(help="HL7 v2: dead letters, replay, send over MLLP", no_args_is_help=True)


def _open(settings: Settings) -> InboxFile:
    try:
        path = inbox_path(settings.storage, settings.database, settings.hl7_inbox)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    return InboxFile(path)


def _letter(inbox: InboxFile, id: int) -> DeadLetter:
    letter = inbox.dead_letter(id)
    if letter is None:
        typer.echo(f"error: no dead letter {id}", err=True)
        raise typer.Exit(code=2)
    return letter


def _er7(text: str) -> str:
    return "\n".join(s for s in text.replace("\r\n", "\r").split("\r") if s)


@app.command("dead-letters")
def dead_letters(
    all: Annotated[bool, typer.Option("--all", help="Also the letters already replayed")] = False,
) -> None:
    """List the dead letters: ID, direction, message, time and reason."""
    inbox = _open(Settings())
    try:
        letters = inbox.dead_letters(include_replayed=all)
        for letter in letters:
            if letter.direction == "in":
                message = inbox.message(letter.message_id)
                what = (
                    f"{message.message_type} {message.sender} {message.control_id}"
                    if message
                    else "?"
                )
            else:
                outgoing = inbox.outgoing(letter.message_id)
                what = (
                    f"{outgoing.event} to {outgoing.destination} {outgoing.patient_key}"
                    if outgoing
                    else "?"
                )
            replayed = f" [replayed: {letter.replay_result}]" if letter.replayed else ""
            typer.echo(
                f"{letter.id}\t{letter.direction}\t{what}\t{letter.created}\t"
                f"{letter.reason}{replayed}"
            )
        if not letters:
            typer.echo("no dead letters", err=True)
    finally:
        inbox.close()


@app.command()
def show(id: Annotated[int, typer.Argument(help="Dead letter ID")]) -> None:
    """Show one dead letter: why, the message and the ACK."""
    inbox = _open(Settings())
    try:
        letter = _letter(inbox, id)
        typer.echo(f"dead letter {letter.id} ({letter.direction}), {letter.created}")
        typer.echo(f"reason: {letter.reason}")
        if letter.replayed:
            typer.echo(f"replayed: {letter.replayed}: {letter.replay_result}")
        if letter.direction == "in":
            message = inbox.message(letter.message_id)
            if message is not None:
                typer.echo(
                    f"from: {message.sender}  control id: {message.control_id}  "
                    f"type: {message.message_type}  received: {message.received}  "
                    f"state: {message.state}"
                )
                typer.echo("message:")
                typer.echo(_er7(message.raw.decode("utf-8", "replace")))
                if message.ack:
                    typer.echo("ack:")
                    typer.echo(_er7(message.ack))
        else:
            outgoing = inbox.outgoing(letter.message_id)
            if outgoing is not None:
                typer.echo(
                    f"to: {outgoing.destination}  event: {outgoing.event}  "
                    f"patient: {outgoing.patient_key}  attempts: {outgoing.attempts}  "
                    f"state: {outgoing.state}"
                )
                typer.echo("message:")
                typer.echo(_er7(outgoing.payload))
                if outgoing.ack:
                    typer.echo("ack:")
                    typer.echo(_er7(outgoing.ack))
    finally:
        inbox.close()


@app.command()
def replay(id: Annotated[int, typer.Argument(help="Dead letter ID")]) -> None:
    """Process an inbound dead letter again now, or queue an outbound one again."""
    settings = Settings()
    inbox = _open(settings)
    try:
        letter = _letter(inbox, id)
        if letter.replayed and letter.replay_result in ("ok", "requeued"):
            typer.echo(f"dead letter {id} was already replayed ({letter.replay_result})", err=True)
            raise typer.Exit(code=1)
        inbox.requeue(letter)
        if letter.direction == "out":
            inbox.replayed(id, "requeued")
            typer.echo(f"dead letter {id}: queued again for delivery")
            return
    finally:
        inbox.close()
    code, text = asyncio.run(_replay_inbound(settings, letter))
    inbox = _open(settings)
    try:
        inbox.replayed(id, "ok" if code == "AA" else f"{code}: {text}")
    finally:
        inbox.close()
    typer.echo(f"dead letter {id}: {code}{': ' + text if text else ''}")
    raise typer.Exit(code=0 if code == "AA" else 1)


async def _replay_inbound(settings: Settings, letter: DeadLetter) -> tuple[str, str]:
    from adapters.hl7v2.inbox import Inbox
    from adapters.hl7v2.ingest import Ingestor
    from adapters.hl7v2.runtime import ingest_options
    from fhir_server.assembly import convert_options, open_service

    async with open_service(settings) as service:
        inbox = Inbox(inbox_path(settings.storage, settings.database, settings.hl7_inbox))
        await inbox.open()
        try:
            options = ingest_options(settings, convert_options(settings))
            stored = await inbox.call(inbox.file.message, letter.message_id)
            if stored is None:
                return "AE", f"message {letter.message_id} is not in the inbox"
            outcome = await Ingestor(service, inbox, options).process(stored)
            return outcome.code, read_ack(outcome.ack).text
        finally:
            await inbox.close()


@app.command()
def send(
    file: Annotated[
        Path,
        typer.Argument(
            help="ER7 file: one or more messages, each from MSH", exists=True, dir_okay=False
        ),
    ],
    to: Annotated[str, typer.Option("--to", help="HOST:PORT of an MLLP listener")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each ACK")] = 30.0,
) -> None:
    """Send the messages in FILE over MLLP, one connection, and print each ACK."""
    from adapters.hl7v2.mllp import split_address

    try:
        host, port = split_address(to)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    messages = split_messages(file.read_bytes())
    if not messages:
        typer.echo(f"error: no MSH segment in {file}", err=True)
        raise typer.Exit(code=2)
    failed = asyncio.run(_send(host, port, messages, timeout))
    raise typer.Exit(code=1 if failed else 0)


async def _send(host: str, port: int, messages: list[bytes], timeout: float) -> int:
    from adapters.hl7v2.mllp import MllpSender

    sender = MllpSender(host, port, timeout)
    failed = 0
    try:
        for number, message in enumerate(messages, start=1):
            try:
                acks = await sender.exchange(message)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as error:
                typer.echo(f"{number}: no ACK: {error!r}", err=True)
                return failed + len(messages) - number + 1
            for raw in acks:
                ack = read_ack(raw)
                typer.echo(
                    f"{number}: {ack.code or '?'} {ack.control_id}"
                    f"{' ' + ack.text if ack.text else ''}"
                )
            if not read_ack(acks[-1]).accepted:
                failed += 1
    finally:
        await sender.close()
    return failed


def split_messages(data: bytes) -> list[bytes]:
    """The messages of an ER7 file (a batch's envelope dropped), each from its MSH; LF and
    CRLF segment ends become CR."""
    from adapters.hl7v2.batch import split

    return [re.sub(rb"\r\n|\n", b"\r", m) for m in split(data)]
