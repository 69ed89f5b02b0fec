"""Outbound HL7 v2 feeds: ADT^A08 when a Patient changes, ORU^R01 when a DiagnosticReport
becomes final, sent over MLLP to the destinations an operator configured.

A write listener (`FhirService.on_write`, told after commit) hands each written version
to one builder task, which turns it into a message per interested destination and
queues it in the inbox file's `outbound` table. One delivery task per destination sends
the queue in order per patient over a persistent connection: AA or CA is delivered; AE
or AR is a dead letter at once; no answer (refused, closed, timeout) is retried with
exponential back-off (`backoff` * 2^n seconds) and after `attempts` tries is a dead
letter. While a patient's message waits for a retry, that patient's later messages wait
too; other patients go on.

Loops: a version written by an inbound HL7 v2 message is not sent back to the system it
came from (the destination whose `application`, or else `name`, equals the inbound
MSH-3's first component). A version queued between commit and the builder is lost if
the process dies in that instant: the write itself is committed either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.hl7v2.ack import read_ack
from adapters.hl7v2.fhir_to_v2 import Envelope, adt_a08, oru_r01
from adapters.hl7v2.inbox import Inbox, Outgoing, after
from adapters.hl7v2.ingest import ORIGIN
from adapters.hl7v2.mllp import MllpSender
from fhir_server.context import SYSTEM
from fhir_server.errors import FhirError
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.model import fhirjson
from fhir_server.storage.base import StoredResource

log = logging.getLogger("fhir_server.hl7v2")
EVENTS = {"Patient": "ADT^A08", "DiagnosticReport": "ORU^R01"}
POLL_SECONDS = 1.0  # also picks up dead letters an operator put back in the queue


@dataclass(frozen=True)
class Destination:
    """A system that receives our messages (FHIR_HL7_DESTINATIONS, a JSON list of these)."""

    name: str
    host: str
    port: int
    events: tuple[str, ...] = ("ADT^A08", "ORU^R01")
    application: str = ""  # its MSH-3 as sender, and MSH-5 of what we send; default `name`
    facility: str = ""

    @property
    def system(self) -> str:
        return self.application or self.name


@dataclass(frozen=True)
class OutboundOptions:
    attempts: int = 5
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    ack_timeout: float = 10.0
    envelope: Envelope = field(default_factory=Envelope)


class Dispatcher:
    def __init__(
        self,
        service: FhirService,
        inbox: Inbox,
        destinations: Sequence[Destination],
        options: OutboundOptions | None = None,
    ) -> None:
        self.service = service
        self.inbox = inbox
        self.destinations = list(destinations)
        self.options = options or OutboundOptions()
        self._written: asyncio.Queue[tuple[StoredResource, str | None]] = asyncio.Queue()
        self._wake = {d.name: asyncio.Event() for d in self.destinations}
        self._tasks: list[asyncio.Task[None]] = []
        self._delivering: list[asyncio.Task[None]] = []

    def install(self) -> None:
        """Listen to Patient and DiagnosticReport writes."""
        self.service.on_write(tuple(EVENTS), self._on_write)

    async def start(self) -> Dispatcher:
        """Build and deliver (a single process: `start_building` and `start_delivering`)."""
        self.start_building()
        self.start_delivering()
        return self

    def start_building(self) -> None:
        """Queue the messages this process's writes call for (every server process)."""
        self._tasks.append(asyncio.get_running_loop().create_task(self._build_forever()))

    def start_delivering(self) -> None:
        """Send what every process queued (the leader only: one sender per destination)."""
        loop = asyncio.get_running_loop()
        for destination in self.destinations:
            self._delivering.append(loop.create_task(self._deliver_forever(destination)))

    async def stop_delivering(self) -> None:
        await _cancel(self._delivering)

    async def stop(self) -> None:
        await _cancel(self._delivering)
        await _cancel(self._tasks)

    def _on_write(self, written: Sequence[StoredResource]) -> None:
        origin = ORIGIN.get()
        for rec in written:
            if not rec.deleted:
                self._written.put_nowait((rec, origin))

    # -- building ------------------------------------------------------------------------

    async def _build_forever(self) -> None:
        while True:
            rec, origin = await self._written.get()
            try:
                await self.build(rec, origin)
            except Exception:
                log.exception("HL7 v2 outbound: cannot build a message for %s/%s", rec.type, rec.id)

    async def build(self, rec: StoredResource, origin: str | None) -> int:
        """Queue the message `rec` calls for at each destination; how many were queued."""
        event = EVENTS[rec.type]
        targets = [
            d for d in self.destinations if event in d.events and not _same_system(origin, d.system)
        ]
        if not targets:
            return 0
        resource = fhirjson.loads(rec.data)
        if rec.type == "Patient":
            key = f"Patient/{rec.id}"

            def render(envelope: Envelope) -> str:
                return adt_a08(resource, envelope)
        else:
            if resource.get("status") != "final" or await self._was_final(rec):
                return 0
            key = (resource.get("subject") or {}).get("reference") or f"DiagnosticReport/{rec.id}"
            patient = await self._read(key) if key.startswith("Patient/") else None
            results = [
                await self._read(r.get("reference", "")) for r in resource.get("result") or []
            ]
            observations = [o for o in results if o is not None]

            def render(envelope: Envelope) -> str:
                return oru_r01(resource, patient, observations, envelope)

        for destination in targets:
            envelope = Envelope(
                self.options.envelope.sending_application,
                self.options.envelope.sending_facility,
                destination.system,
                destination.facility,
                self.options.envelope.authorities,
            )
            await self.inbox.call(
                self.inbox.file.enqueue, destination.name, key, event, render(envelope)
            )
            self._wake[destination.name].set()
        return len(targets)

    async def _was_final(self, rec: StoredResource) -> bool:
        if rec.version == 1:
            return False
        before = await self._read(f"DiagnosticReport/{rec.id}/_history/{rec.version - 1}")
        return before is not None and before.get("status") == "final"

    async def _read(self, path: str) -> dict[str, Any] | None:
        if not path or "/" not in path:
            return None
        try:
            response = await self.service.handle(Request("GET", path, context=SYSTEM))
        except FhirError:
            return None
        body = response.body
        return fhirjson.loads(body) if isinstance(body, bytes) else body

    # -- delivery ------------------------------------------------------------------------

    async def _deliver_forever(self, destination: Destination) -> None:
        sender = MllpSender(destination.host, destination.port, self.options.ack_timeout)
        wake = self._wake[destination.name]
        try:
            while True:
                wake.clear()
                delay = await self.deliver(destination, sender)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
        finally:
            await sender.close()

    async def deliver(self, destination: Destination, sender: MllpSender) -> float:
        """Send what is due, in order per patient; seconds until the next retry is due."""
        queued = await self.inbox.call(self.inbox.file.pending, destination.name)
        waiting: set[str] = set()
        delay = POLL_SECONDS
        for message in queued:
            if message.patient_key in waiting:
                continue
            due = message.next_at - time.time()
            if due > 0 or not await self._send(destination, sender, message):
                waiting.add(message.patient_key)
                delay = min(delay, max(due, 0.01) if due > 0 else self._backoff(message))
        return delay

    async def _send(self, destination: Destination, sender: MllpSender, message: Outgoing) -> bool:
        """One try; False when it should be tried again later."""
        try:
            acks = await sender.exchange(message.payload.encode())
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            why = f"no answer from {destination.host}:{destination.port}: {error!r}"
            attempts = message.attempts + 1
            if attempts >= self.options.attempts:
                log.warning(
                    "HL7 v2 outbound %s to %s: dead letter after %d tries: %s",
                    message.id,
                    destination.name,
                    attempts,
                    why,
                )
                await self.inbox.call(self.inbox.file.undeliverable, message.id, why)
                return True
            next_at = after(self.options.backoff * 2 ** (attempts - 1))
            await self.inbox.call(self.inbox.file.retry_later, message.id, attempts, next_at, why)
            return False
        ack = read_ack(acks[-1])
        text = acks[-1].decode("utf-8", "replace")
        if ack.accepted:
            await self.inbox.call(self.inbox.file.sent, message.id, text)
        else:
            why = f"{destination.name} answered {ack.code or 'no MSA'}: {ack.text}"
            log.warning("HL7 v2 outbound %s: %s", message.id, why)
            await self.inbox.call(self.inbox.file.undeliverable, message.id, why, text)
        return True

    def _backoff(self, message: Outgoing) -> float:
        return self.options.backoff * 2.0**message.attempts


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tasks.clear()


def _same_system(origin: str | None, system: str) -> bool:
    if not origin:
        return False
    return origin.split("^")[0].strip().lower() == system.split("^")[0].strip().lower()
