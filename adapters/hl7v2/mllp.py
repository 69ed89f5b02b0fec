"""HL7 v2 over MLLP: our listener and our sender, framed by python-hl7's `hl7.mllp` streams.

The listener keeps each connection open for as many messages as the peer sends, one
after the other (each is answered before the next is read), and answers every block it
reads, bad ones included, before it reads on: a block larger than the limit gets AR 207,
a block that does not start with <VT> gets AR, an unreadable MSH gets AR. It closes a
connection only when the peer does, after `idle_timeout` seconds of silence, or, when
`max_connections` are already open, after answering its first message with AR.

python-hl7's reader enforces its limit by dropping what it has buffered, which loses the
end of the oversized block; `BoundedReader` consumes the whole block instead, so the
next message on the connection is read whole. It also resynchronises: stray bytes before a
start block are discarded (logged by count, never content) and the message after them is
read; a connection that has sent bytes but no start block for `garbage_timeout` seconds
is closed instead of waiting out the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from asyncio import IncompleteReadError, LimitOverrunError
from collections.abc import Callable
from dataclasses import dataclass

from hl7.mllp import HL7StreamProtocol, HL7StreamReader, InvalidBlockError, open_hl7_connection
from hl7.mllp.streams import CARRIAGE_RETURN, END_BLOCK, START_BLOCK

from adapters.hl7v2.ack import read_ack
from adapters.hl7v2.batch import is_batch, receive_batch
from adapters.hl7v2.ingest import Ingestor, Reply
from fhir_server.interactions import observed
from fhir_server.interactions.observed import Observed

log = logging.getLogger("fhir_server.hl7v2")
END = END_BLOCK + CARRIAGE_RETURN
HEAD_BYTES = 4096  # of an oversized block, kept to read its MSH for the AR
REFUSE_WAIT = 10.0  # seconds a connection over the limit has to send the message we refuse


class TooLarge(Exception):
    """A block longer than the limit; `head` is its beginning (for the MSH)."""

    def __init__(self, head: bytes) -> None:
        super().__init__("MLLP block exceeds the size limit")
        self.head = head


class Garbage(Exception):
    """Bytes that hold no start block, and no more came for a while."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes without an MLLP start block")
        self.size = size


class BoundedReader(HL7StreamReader):  # type: ignore[misc]  # hl7 ships no types
    """Its `readblock()` consumes an oversized block entirely and raises `TooLarge`, and
    skips stray bytes before the start block of a message."""

    async def readblock(self) -> bytes:
        block: bytes = await self.readuntil(END)
        start = block.rfind(START_BLOCK)  # a message holds no <VT>: the last one starts it
        if start < 0:
            raise InvalidBlockError("Block does not begin with Start Block character <VT>")
        if start > 0:
            log.warning("HL7 v2 MLLP: %d stray bytes before a start block discarded", start)
        return block[start + 1 : -len(END)]

    async def next_block(self, idle: float, garbage: float) -> bytes:
        """The next block; TimeoutError after `idle` seconds of nothing, `Garbage` when
        what was received holds no start block and nothing completed it for `garbage`."""
        read = asyncio.ensure_future(self.readblock())
        deadline = asyncio.get_running_loop().time() + idle
        try:
            while True:
                left = deadline - asyncio.get_running_loop().time()
                done, _ = await asyncio.wait({read}, timeout=max(0.0, min(garbage, left)))
                if done:
                    return read.result()
                if self._buffer and START_BLOCK not in self._buffer:
                    raise Garbage(len(self._buffer))
                if left <= garbage:
                    raise TimeoutError
        finally:
            if not read.done():
                read.cancel()

    async def readuntil(self, separator: bytes = END) -> bytes:
        try:
            block: bytes = await super().readuntil(separator)
            return block
        except LimitOverrunError as overrun:
            head = await self.readexactly(overrun.consumed)
            await self._skip_to(separator)
            raise TooLarge(head[1:HEAD_BYTES]) from None

    async def _skip_to(self, separator: bytes) -> None:
        while True:
            try:
                await super().readuntil(separator)
                return
            except LimitOverrunError as overrun:
                await self.readexactly(overrun.consumed)


@dataclass(frozen=True)
class ListenerLimits:
    max_message_bytes: int = 10 * 1024 * 1024
    max_connections: int = 100
    idle_timeout: float = 300.0
    garbage_timeout: float = 10.0  # seconds a connection may hold bytes without a start block


AckObserver = Callable[[bytes, str | None, Observed | None], None]
"""Told of each ACK sent: the ACK, the peer's address, what its message wrote."""


class MllpListener:
    """The MLLP server: every block read goes to `ingestor.receive`."""

    def __init__(
        self, ingestor: Ingestor, host: str, port: int, limits: ListenerLimits | None = None
    ) -> None:
        self.ingestor = ingestor
        self.host, self.port = host, port
        self.limits = limits or ListenerLimits()
        self._server: asyncio.Server | None = None
        self._open = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()  # connections handling a message
        self._stopping = False
        self.observer: AckObserver | None = None

    async def start(self) -> MllpListener:
        loop = asyncio.get_running_loop()

        def protocol() -> HL7StreamProtocol:
            reader = BoundedReader(limit=self.limits.max_message_bytes)
            return HL7StreamProtocol(reader, self._connected)

        self._server = await loop.create_server(protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("HL7 v2 MLLP listener on %s:%d", self.host, self.port)
        return self

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting; a connection waiting for its next message closes now, one
        handling a message closes once it is answered (or after `grace` seconds)."""
        if self._server is None:
            return
        self._stopping = True
        self._server.close()
        for task in list(self._tasks - self._busy):
            task.cancel()
        if self._busy:
            await asyncio.wait(set(self._busy), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        self._stopping = False

    def _connected(self, reader: BoundedReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: BoundedReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")

        async def reply(ack: bytes) -> None:
            writer.writeblock(ack)  # type: ignore[attr-defined]
            await writer.drain()
            if self.observer is not None:  # the audit trail: one record per ACK sent
                self.observer(ack, str(peer[0]) if peer else None, observed.current())

        if self._open >= self.limits.max_connections:
            log.warning("HL7 v2: refusing %s, %d connections open", peer, self._open)
            await self._refuse(reader, reply)
            writer.close()
            return
        self._open += 1

        try:
            while not self._stopping and await self._next(reader, reply):
                pass
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._open -= 1
            writer.close()

    async def _refuse(self, reader: BoundedReader, reply: Reply) -> None:
        """One connection too many: its first message gets AR (CR in enhanced mode), not
        silence, so the sender knows to try again later."""
        text = f"Too many connections ({self.limits.max_connections} open): send again later"
        try:
            block = await asyncio.wait_for(reader.readblock(), REFUSE_WAIT)
        except TooLarge as error:
            block = error.head
        except (TimeoutError, IncompleteReadError, InvalidBlockError, ConnectionError):
            return
        with contextlib.suppress(ConnectionError):
            await self.ingestor.reject(block, text, "207", reply)

    async def _next(self, reader: BoundedReader, reply: Reply) -> bool:
        """Read and answer one block; False when the connection is done."""
        try:
            block = await reader.next_block(self.limits.idle_timeout, self.limits.garbage_timeout)
        except (TimeoutError, IncompleteReadError):
            return False
        except Garbage as error:
            log.warning("HL7 v2 MLLP: closing a connection that sent %s", error)
            return False
        except TooLarge as error:
            limit = self.limits.max_message_bytes
            await self.ingestor.reject(
                error.head, f"Message too large: the limit is {limit} bytes", "207", reply
            )
            return True
        except InvalidBlockError:
            await self.ingestor.reject(
                b"", "MLLP block does not begin with <VT> (0x0B)", "207", reply
            )
            return True
        observed.begin()  # what this message writes, for the audit trail
        task = asyncio.current_task()
        if task is not None:  # stop() lets it answer this message before closing
            self._busy.add(task)
        try:
            if is_batch(block):
                await receive_batch(self.ingestor, block, reply)
            else:
                await self.ingestor.receive(block, reply)
        finally:
            if task is not None:
                self._busy.discard(task)
        return True


class MllpSender:
    """A persistent MLLP client: send one message, wait for its ACK(s)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def exchange(self, message: bytes, application_ack: bool = True) -> list[bytes]:
        """Send `message`, read its ACK; after a CA also the application ACK, if one comes."""
        reader, writer = await self._connect()
        try:
            writer.writeblock(message)  # type: ignore[attr-defined]
            await writer.drain()
            received = [await self._read(reader)]
            if application_ack and read_ack(received[0]).code == "CA":
                # MSH-16 ER or SU: no application ACK is also an answer
                with contextlib.suppress(TimeoutError):
                    received.append(await self._read(reader))
            return received
        except BaseException:
            await self.close()
            raise

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        block = await asyncio.wait_for(reader.readblock(), self.timeout)  # type: ignore[attr-defined]
        return bytes(block)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] = await asyncio.wait_for(
                open_hl7_connection(self.host, self.port), self.timeout
            )
            self._streams = streams
        return self._streams

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


def split_address(address: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"'{address}' is not HOST:PORT")
    return host, int(port)
