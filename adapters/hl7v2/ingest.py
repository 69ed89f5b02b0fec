"""From a received HL7 v2 message to one committed FHIR transaction and its ACK.

`Ingestor.receive(raw, reply)` is the whole inbound path, whatever the transport:

1. read MSH (unreadable: AR under a default MSH; an ACK is never acknowledged) and check
   what it says (type, event, MSH-10, processing id, version): a message refused on these
   grounds gets AR, or CR at the commit level in enhanced mode, and is not stored;
2. store the message in the durable inbox (a resend with the same sender, MSH-10 and bytes
   is a duplicate: it gets the ACK the first one got and changes nothing);
3. enhanced mode (MSH-15 non-empty): the commit ACK (CA) now that the message is durable,
   as MSH-15 asks (AL, NE, ER, SU);
4. convert it and POST the transaction Bundle to the FHIR service as the system context,
   one patient at a time (messages about one patient commit in arrival order, other
   patients proceed in parallel);
5. record the outcome and the application ACK in the inbox (AA with an ERR of severity W
   for each optional segment whose content could not be mapped), then send that ACK: original
   mode always, enhanced mode as MSH-16 asks, over the same connection.

An AE from the conversion or the FHIR service, or an internal error that repeats
`attempts` times, files the message as a dead letter; an AR (unsupported type, version,
bad structure) is recorded as rejected: the sender has to fix it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from adapters.hl7v2.ack import AckError, build_ack, encode, read_ack
from adapters.hl7v2.convert import ConvertOptions, convert
from adapters.hl7v2.convert.locations import locate
from adapters.hl7v2.inbox import Inbox, Stored
from adapters.hl7v2.known import Known
from adapters.hl7v2.message import Header, MessageError, check_supported, read_header
from fhir_server import metrics
from fhir_server.context import SYSTEM
from fhir_server.errors import FhirError, InvalidResource
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.model.validate import MODEL_VERDICTS, ModelVerdicts

log = logging.getLogger("fhir_server.hl7v2")

Reply = Callable[[bytes], Awaitable[None]]
"""Sends one ACK (encoded ER7) back to the sender."""

ORIGIN: ContextVar[str | None] = ContextVar("hl7v2_origin", default=None)
"""MSH-3 of the inbound message whose transaction is being written (write listeners see it)."""


@dataclass(frozen=True)
class IngestOptions:
    convert: ConvertOptions = field(default_factory=ConvertOptions)
    attempts: int = 3  # tries for an internal error before the message is a dead letter
    retry_delay: float = 0.05  # seconds, doubled after each try
    base: str = ""  # the FHIR base URL the transaction is posted to


@dataclass(frozen=True, slots=True)
class Outcome:
    code: str  # AA, AE or AR
    ack: str  # the application ACK, ER7


def sender(header: Header) -> str:
    return f"{header.sending_application}|{header.sending_facility}"


def wants(condition: str, ok: bool) -> bool:
    """MSH-15/16 (HL7 table 0155): AL always, NE never, ER on error only, SU on success only."""
    condition = condition.upper()
    return condition in ("AL", "") or (condition == "ER" and not ok) or (condition == "SU" and ok)


class Ingestor:
    def __init__(
        self, service: FhirService, inbox: Inbox, options: IngestOptions | None = None
    ) -> None:
        self.service = service
        self.inbox = inbox
        self.options = options or IngestOptions()
        self._locks = _KeyedLocks()
        self._inflight: dict[int, asyncio.Future[Outcome]] = {}
        # The converter writes resources in a few shapes: the R4B models run once per shape
        # (the walk and the validators on every resource), see `ModelVerdicts`.
        self._verdicts = ModelVerdicts()
        # shared resources (sender, applications, places, doctors) committed unchanged
        # before are left out of the next transactions, see `Known`
        self._known = Known()

    async def drain(self, older_than: float = 0.0) -> int:
        """Process what was stored but never processed (before a crash or stop), if it was
        stored more than `older_than` seconds ago."""
        waiting = await self.inbox.call(self.inbox.file.unfinished, older_than)
        for stored in waiting:
            await self._once(stored)
        if waiting:
            log.info("HL7 v2 inbox: processed %d message(s) left from before", len(waiting))
        return len(waiting)

    async def receive(self, raw: bytes, reply: Reply) -> None:
        """Store, process and acknowledge one message, sending each ACK through `reply`."""
        try:
            header = read_header(raw)
        except MessageError as error:
            await reply(encode(build_ack(None, error.ack_code, _err(error)), None))
            return
        except Exception as error:  # a header reader bug must still end in an AR, not silence
            log.exception("HL7 v2: cannot read the MSH segment")
            await reply(encode(build_ack(None, "AR", AckError(f"Cannot read MSH: {error}")), None))
            return
        if header.message_type.upper() == "ACK":
            log.info("HL7 v2: ACK %s from %s not answered", header.control_id, sender(header))
            return
        try:
            await self._receive(header, raw, reply)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as error:  # e.g. the inbox cannot record the outcome: still answer
            log.exception("HL7 v2: message %s could not be handled", header.control_id)
            text = f"Internal error: {type(error).__name__}: {error}"
            await reply(encode(build_ack(header, "AE", AckError(text)), header))

    async def reject(self, raw: bytes, text: str, code: str, reply: Reply) -> None:
        """Refuse a message before storing it (too large, bad framing): AR, or CR if enhanced."""
        try:
            header: Header | None = read_header(raw)
        except Exception:
            header = None
        if header is not None and header.message_type.upper() == "ACK":
            return
        enhanced = header is not None and bool(header.accept_ack_type)
        ack_code = "CR" if enhanced else "AR"
        if header is not None:
            metrics.count_hl7(header.message_type, header.trigger_event, ack_code)
        await reply(encode(build_ack(header, ack_code, AckError(text, code)), header))

    async def _receive(self, header: Header, raw: bytes, reply: Reply) -> None:
        enhanced = bool(header.accept_ack_type)
        try:
            check_supported(header, self.options.convert.strict_processing_id)
        except MessageError as error:  # the verdict is known now: no CA for it
            log.warning(
                "HL7 v2 message %s from %s refused on receipt: %s",
                header.control_id,
                sender(header),
                error.text,
            )
            code = "CR" if enhanced else "AR"
            metrics.count_hl7(header.message_type, header.trigger_event, code)
            if not enhanced or wants(header.accept_ack_type, ok=False):
                await reply(encode(build_ack(header, code, _err(error)), header))
            return
        try:
            stored, new = await self.inbox.call(
                self.inbox.file.receive,
                sender(header),
                header.control_id,
                f"{header.message_type}^{header.trigger_event}",
                raw,
            )
        except Exception as error:
            log.exception("HL7 v2: the inbox could not store message %s", header.control_id)
            code = "CE" if enhanced else "AE"
            if not enhanced or wants(header.accept_ack_type, ok=False):
                text = f"The message could not be stored: {error}"
                await reply(encode(build_ack(header, code, AckError(text)), header))
            return
        if enhanced and wants(header.accept_ack_type, ok=True):
            await reply(encode(build_ack(header, "CA"), header))
        if not new and stored.ack is not None:
            outcome = Outcome(read_ack(stored.ack).code, stored.ack)
        else:
            outcome = await self._once(stored, header)
        metrics.count_hl7(header.message_type, header.trigger_event, outcome.code)
        if not enhanced or wants(header.application_ack_type, ok=outcome.code == "AA"):
            await reply(encode(outcome.ack, header))

    async def _once(self, stored: Stored, header: Header | None = None) -> Outcome:
        """Process a stored message unless that is already under way (a duplicate in flight)."""
        running = self._inflight.get(stored.id)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight[stored.id] = future
        try:
            outcome = await self.process(stored, header)
            future.set_result(outcome)
            return outcome
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: a lone failure must not log "never retrieved"
            raise
        finally:
            del self._inflight[stored.id]

    async def process(self, stored: Stored, header: Header | None = None) -> Outcome:
        """Convert and commit `stored`; record and return its application ACK."""
        try:
            header = header or read_header(stored.raw)
        except MessageError as error:
            return await self._finish(stored, None, error.ack_code, _err(error))
        delay = self.options.retry_delay
        while True:
            try:
                left_out = await self._commit(header, stored)
            except MessageError as error:
                return await self._finish(stored, header, error.ack_code, _err(error))
            except FhirError as error:
                return await self._finish(stored, header, "AE", AckError(error.diagnostics))
            except Exception as error:
                log.exception("HL7 v2: internal error on message %s", stored.id)
                why = f"{type(error).__name__}: {error}"
                tries = await self.inbox.call(self.inbox.file.attempted, stored.id, why)
                if tries < self.options.attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                return await self._finish(
                    stored, header, "AE", AckError(f"Internal error after {tries} attempts: {why}")
                )
            return await self._finish(stored, header, "AA", None, [_err(e) for e in left_out])

    async def _commit(self, header: Header, stored: Stored) -> tuple[MessageError, ...]:
        """Convert and write `stored`; what the conversion left out (to say so in the ACK)."""
        conversion = convert(stored.raw, self.options.convert)
        key = conversion.patient_key or f"message:{stored.id}"
        bundle, sources, pending = self._known.prune(conversion.bundle, conversion.sources)
        request = Request(
            "POST",
            "",
            body=bundle,
            context=SYSTEM,
            base=self.options.base,
            headers={"prefer": "return=minimal"},
        )
        # a merge (A40) waits for, and holds back, the messages of both patients
        async with self._locks.hold_all((key, *conversion.merged_keys)):
            token = ORIGIN.set(header.sending_application)
            verdicts = MODEL_VERDICTS.set(self._verdicts)
            try:
                answer = await self.service.handle(request)
            except InvalidResource as error:  # a converted resource the server refuses
                self._known.forget()
                where = locate(sources, error.diagnostics)
                if not where:
                    raise
                raise MessageError(
                    f"{where}: {error.diagnostics}", error_code="102", location=where
                ) from None
            except BaseException:
                self._known.forget()
                raise
            finally:
                MODEL_VERDICTS.reset(verdicts)
                ORIGIN.reset(token)
        self._known.learn(pending, bundle, answer.body)
        return conversion.left_out

    async def _finish(
        self,
        stored: Stored,
        header: Header | None,
        code: str,
        error: AckError | None,
        warnings: list[AckError] | None = None,
    ) -> Outcome:
        ack = build_ack(header, code, error, warnings or ())
        state = {"AA": "done", "AR": "rejected"}.get(code, "dead")
        await self.inbox.call(
            self.inbox.file.finish, stored.id, state, ack, error.text if error else None
        )
        if error:
            log.warning(
                "HL7 v2 message %s (%s) answered %s: %s",
                stored.id,
                stored.control_id,
                code,
                error.text,
            )
        return Outcome(code, ack)


def _err(error: MessageError) -> AckError:
    return AckError(error.text, error.error_code or "207", error.location)


class _KeyedLocks:
    """One FIFO lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold_all(self, keys: tuple[str, ...]) -> AsyncIterator[None]:
        """The locks of all `keys`, taken in one global order (no two holders deadlock)."""
        async with AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                await stack.enter_async_context(self.hold(key))
            yield

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]
