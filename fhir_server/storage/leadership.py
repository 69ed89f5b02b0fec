"""The leader: background duties run in exactly one process at a time, chosen by a lease.

Every server process (`serve --workers N`, or several machines on one MongoDB) runs a
`Leadership` over the shared storage. Each tries, every `renew_every` seconds, to take or
renew the lease `leader` for `seconds`; the holder runs every registered duty, the others
none. A holder that stops cleanly releases the lease, so another process takes it on its
next try; one that dies (`kill -9`, a lost machine) leaves the lease to expire, and
another process takes it within `seconds + renew_every`.

A holder that cannot renew (the database is unreachable, or a long write keeps the lease
write waiting) stops its duties before its lease can expire, so two processes never run
them at once as long as the machines' clocks agree to well under `seconds`.

A duty is a function returning an async context manager: entering it starts the work
(bind a port, start a task), leaving it stops the work. Duties start in the order they
were added and stop in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fhir_server.storage.base import Storage

log = logging.getLogger("fhir_server.leader")

Duty = Callable[[], AbstractAsyncContextManager[object]]
"""Background work that only the leader runs: entering starts it, leaving stops it."""

LEASE = "leader"
LEASE_SECONDS = 3.0
RENEW_EVERY = 1.0


@asynccontextmanager
async def running(work: Callable[[], Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """`work()` as a task while the block lasts, cancelled when it ends: the body of most
    duties (a loop that wakes up now and then)."""
    task = asyncio.get_running_loop().create_task(work())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def holder_id() -> str:
    """This process, as a lease holder: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leadership:
    """Takes and renews the lease over `storage`; runs `duties` while holding it."""

    def __init__(
        self,
        storage: Storage,
        duties: Sequence[tuple[str, Duty]],
        *,
        seconds: float = LEASE_SECONDS,
        renew_every: float = RENEW_EVERY,
        name: str = LEASE,
    ) -> None:
        if renew_every * 2 > seconds:
            raise ValueError("the lease must outlive at least two renewals")
        self.storage = storage
        self.duties = list(duties)
        self.seconds = seconds
        self.renew_every = renew_every
        self.name = name
        self.holder = holder_id()
        self._renewed = 0.0  # monotonic time of the last successful take or renewal
        self._running: AsyncExitStack | None = None
        self._starting: asyncio.Task[None] | None = None  # duties starting, beside renewals
        self._task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        """Whether this process holds the lease and runs the duties."""
        return self._running is not None

    async def start(self, *, wait: float = 0.0) -> Leadership:
        """Try for the lease now (for up to `wait` seconds), then keep trying in a task."""
        deadline = time.monotonic() + wait
        await self._try()
        while not self.leading and time.monotonic() < deadline:
            await asyncio.sleep(min(self.renew_every / 4, max(deadline - time.monotonic(), 0)))
            await self._try()
        self._task = asyncio.get_running_loop().create_task(self._forever())
        return self

    async def stop(self) -> None:
        """Stop the duties and give the lease up, so another process takes it at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.leading or self._starting is not None:
            await self._step_down()
            try:
                await self.storage.release_lease(self.name, self.holder)
            except Exception:  # it expires on its own
                log.exception("could not release the leader lease")

    async def _try(self) -> None:
        """One round, and the duties' start if it began one."""
        await self._round()
        if self._starting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._starting)

    async def _forever(self) -> None:
        while True:  # followers look twice as often: a dead leader is replaced sooner
            await asyncio.sleep(self.renew_every if self.leading else self.renew_every / 2)
            await self._round()

    async def _round(self) -> None:
        """One try: take or renew the lease, then start or stop the duties to match."""
        started = time.monotonic()
        try:
            held = await asyncio.wait_for(
                self.storage.acquire_lease(self.name, self.holder, self.seconds),
                self._patience,
            )
        except Exception as error:  # unreachable or busy database: try again next round
            log.warning("leader lease: %s", error or type(error).__name__)
            if self.leading and self._safe_until_next_round():
                return
            held = False
        if held:
            self._renewed = started
            if not self.leading and self._starting is None:  # renewals go on meanwhile
                self._starting = asyncio.get_running_loop().create_task(self._step_up())
        elif self.leading or self._starting is not None:
            await self._step_down()

    @property
    def _patience(self) -> float:
        """How long one try may wait (e.g. behind other processes' writes): a leader whose
        renewal fails after that still stops its duties before its lease expires."""
        return self.seconds - 1.5 * self.renew_every

    def _safe_until_next_round(self) -> bool:
        """Whether the lease surely outlives the next try (its wait and its timeout)."""
        elapsed = time.monotonic() - self._renewed
        return elapsed + self.renew_every + self._patience < self.seconds

    async def _step_up(self) -> None:
        """Start the duties (some take a while: the HL7 v2 inbox processes what is left
        first); a lost lease cancels this."""
        log.info("this process (%s) is now the leader", self.holder)
        stack = AsyncExitStack()
        try:
            for name, duty in self.duties:
                log.debug("starting background duty %s", name)
                await stack.enter_async_context(duty())
            self._running = stack
        except asyncio.CancelledError:
            await stack.aclose()
            raise
        except Exception:
            log.exception("a background duty failed to start; trying again next round")
            await stack.aclose()
        finally:
            self._starting = None

    async def _step_down(self) -> None:
        starting = self._starting
        if starting is not None:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        stack, self._running = self._running, None
        if stack is not None:
            log.info("this process (%s) is no longer the leader", self.holder)
            try:
                await stack.aclose()
            except Exception:
                log.exception("a background duty failed to stop")
