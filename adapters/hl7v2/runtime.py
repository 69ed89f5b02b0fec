"""The HL7 v2 adapter as the server runs it: inbox, ingestor, MLLP listener, outbound feeds.

`Hl7Runtime.from_settings(settings, service, convert)` builds it from the FHIR_* settings
and the conversion options (built in one place, the assembly, for every HL7 v2 path).
Every server process opens the inbox and queues the outbound messages its own writes call
for (`start(lead=False)`); the leader alone (`lead_duty`, see `fhir_server.storage.
leadership`) processes what the inbox holds unprocessed, listens for MLLP
(FHIR_MLLP_PORT > 0) and delivers the outbound queue. `start()` does both in a single
process; `stop()` undoes it. `exchange(raw)` is the same path for a message that came
by HTTP: it returns the ACKs instead of writing them to a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.hl7v2.batch import is_batch, receive_batch
from adapters.hl7v2.convert import ConvertOptions
from adapters.hl7v2.fhir_to_v2 import Envelope
from adapters.hl7v2.inbox import Inbox, inbox_path
from adapters.hl7v2.ingest import IngestOptions, Ingestor
from adapters.hl7v2.mllp import AckObserver, ListenerLimits, MllpListener
from adapters.hl7v2.outbound import Destination, Dispatcher, OutboundOptions
from fhir_server.interactions import observed
from fhir_server.interactions.service import FhirService
from fhir_server.settings import Settings

log = logging.getLogger("fhir_server.hl7v2")


STALE_SECONDS = 5.0  # a message unprocessed this long is taken up by the leader


@dataclass
class Hl7Runtime:
    ingestor: Ingestor
    listener: MllpListener | None
    dispatcher: Dispatcher | None
    _leading: AbstractAsyncContextManager[None] | None = None
    _grace: float = 10.0  # seconds MLLP connections get to answer their message at stop
    _observer: AckObserver | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, service: FhirService, convert: ConvertOptions
    ) -> Hl7Runtime:
        inbox = Inbox(inbox_path(settings.storage, settings.database, settings.hl7_inbox))
        ingestor = Ingestor(service, inbox, ingest_options(settings, convert))
        listener = None
        if settings.mllp_port:
            limits = ListenerLimits(
                settings.mllp_max_message_bytes,
                settings.mllp_max_connections,
                settings.mllp_idle_timeout,
                settings.mllp_garbage_timeout,
            )
            listener = MllpListener(
                ingestor, settings.mllp_host or settings.host, settings.mllp_port, limits
            )
        destinations = parse_destinations(settings.hl7_destinations)
        dispatcher = None
        if destinations:
            authorities = {
                system: authority for authority, system in settings.hl7_identifier_systems.items()
            }
            envelope = Envelope(
                settings.hl7_application, settings.hl7_facility, authorities=authorities
            )
            options = OutboundOptions(
                settings.hl7_outbound_attempts,
                settings.hl7_outbound_backoff,
                settings.hl7_ack_timeout,
                envelope,
            )
            dispatcher = Dispatcher(service, inbox, destinations, options)
            dispatcher.install()
        return cls(ingestor, listener, dispatcher)

    @property
    def inbox(self) -> Inbox:
        return self.ingestor.inbox

    async def start(self, *, lead: bool = True) -> Hl7Runtime:
        """Open the inbox and queue outbound messages for this process's writes; with
        `lead`, also run the leader's part now (else `lead_duty` runs it when leading)."""
        await self.inbox.open()
        if self.dispatcher:
            self.dispatcher.start_building()
        if lead:
            self._leading = self.lead_duty()
            await self._leading.__aenter__()
        return self

    async def stop(self, grace: float = 10.0) -> None:
        """Stop leading (MLLP connections close after the message they are answering,
        within `grace` seconds), stop sending, and close the inbox with every outcome
        recorded."""
        self._grace = grace
        if self._leading is not None:
            await self._leading.__aexit__(None, None, None)
            self._leading = None
        if self.dispatcher:
            await self.dispatcher.stop()
        await self.inbox.close()

    @asynccontextmanager
    async def lead_duty(self, first_grace: float = 0.0) -> AsyncIterator[None]:
        """The leader's part (one process at a time): process what the inbox holds
        unprocessed (left by a stop or crash; stored more than `first_grace` seconds ago,
        then regularly what stays unprocessed longer than `STALE_SECONDS`), listen for
        MLLP, deliver the outbound queue."""
        await self.ingestor.drain(first_grace)
        sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        try:
            if self.dispatcher:
                self.dispatcher.start_delivering()
            if self.listener:
                await self.listener.start()
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if self.listener:
                await self.listener.stop(self._grace)
            if self.dispatcher:
                await self.dispatcher.stop_delivering()

    async def _sweep_forever(self) -> None:
        """Messages a process stored but did not finish (it died meanwhile)."""
        while True:
            await asyncio.sleep(STALE_SECONDS)
            try:
                await self.ingestor.drain(STALE_SECONDS)
            except Exception:
                log.exception("HL7 v2 inbox: processing left-over messages failed")

    def observe(self, observer: AckObserver) -> None:
        """Tell `observer` of every ACK this runtime answers with (MLLP and HTTP)."""
        self._observer = observer
        if self.listener is not None:
            self.listener.observer = observer

    async def exchange(self, raw: bytes) -> list[bytes]:
        """Receive one message (or a batch) that came without MLLP; the ACKs, in order."""
        acks: list[bytes] = []

        async def reply(ack: bytes) -> None:
            acks.append(ack)
            if self._observer is not None:
                self._observer(ack, None, observed.current())

        if is_batch(raw):
            await receive_batch(self.ingestor, raw, reply)
        else:
            await self.ingestor.receive(raw, reply)
        return acks


def ingest_options(settings: Settings, convert: ConvertOptions) -> IngestOptions:
    return IngestOptions(convert=convert, base=settings.base_url or "")


def parse_destinations(value: str | list[Any]) -> list[Destination]:
    """FHIR_HL7_DESTINATIONS: a JSON list of {"name", "host", "port", "events", ...}."""
    items: Any = orjson.loads(value) if isinstance(value, str) and value.strip() else value or []
    destinations = []
    for item in items:
        events = tuple(item.get("events") or ("ADT^A08", "ORU^R01"))
        destinations.append(
            Destination(
                name=str(item["name"]),
                host=str(item.get("host", "127.0.0.1")),
                port=int(item["port"]),
                events=events,
                application=str(item.get("application", "")),
                facility=str(item.get("facility", "")),
            )
        )
    return destinations
