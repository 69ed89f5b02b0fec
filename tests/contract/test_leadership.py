"""The leader: two `Leadership`s over one database (two server processes) run the duties in
exactly one of them; when the leader stops or dies, the other takes over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from fhir_server.storage.base import Storage
from fhir_server.storage.leadership import Leadership
from tests.contract.test_coordination import second

SECONDS, RENEW = 0.6, 0.2  # short, so that the tests are quick


def recorder(running: list[str], who: str) -> Callable[[], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def duty() -> AsyncIterator[None]:
        running.append(who)
        try:
            yield
        finally:
            running.remove(who)

    return duty


async def until(check: Callable[[], bool], seconds: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"not within {seconds} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def leadership(storage: Storage, running: list[str], who: str) -> Leadership:
    return Leadership(storage, [(who, recorder(running, who))], seconds=SECONDS, renew_every=RENEW)


async def test_one_leader_runs_the_duties_and_a_stop_hands_over_at_once(storage: Storage) -> None:
    other = await second(storage)
    running: list[str] = []
    a = await leadership(storage, running, "a").start()
    b = await leadership(other, running, "b").start()
    try:
        await asyncio.sleep(3 * RENEW)
        assert running == ["a"] and a.leading and not b.leading
        await a.stop()  # releases the lease: no wait for its expiry
        assert await until(lambda: running == ["b"], SECONDS) < SECONDS
    finally:
        await a.stop()
        await b.stop()
        await other.close()


async def test_a_dead_leader_is_replaced_when_its_lease_expires(storage: Storage) -> None:
    other = await second(storage)
    running: list[str] = []
    a = await leadership(storage, running, "a").start()
    b = await leadership(other, running, "b").start()
    try:
        assert a.leading
        assert a._task is not None
        a._task.cancel()  # a's renewals stop, as if its process froze or died
        taken = await until(lambda: "b" in running, SECONDS + 2 * RENEW + 1)
        assert taken > SECONDS / 2  # not before the lease could expire
    finally:
        await b.stop()
        await other.close()


class Unreachable:
    """A storage whose lease writes fail (the database went away)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.down = False

    async def acquire_lease(self, *args: Any) -> bool:
        if self.down:
            raise ConnectionError("database unreachable")
        return await self.storage.acquire_lease(*args)

    async def release_lease(self, *args: Any) -> None:
        await self.storage.release_lease(*args)


async def test_a_leader_that_cannot_renew_stops_its_duties_before_the_lease_expires(
    storage: Storage,
) -> None:
    flaky = Unreachable(storage)
    running: list[str] = []
    a = await Leadership(
        flaky,  # type: ignore[arg-type]
        [("a", recorder(running, "a"))],
        seconds=SECONDS,
        renew_every=RENEW,
    ).start()
    try:
        assert running == ["a"]
        flaky.down = True
        stopped = await until(lambda: not running, SECONDS)
        assert stopped < SECONDS  # before another process could take the lease
    finally:
        flaky.down = False
        await a.stop()


async def test_duties_start_in_order_and_stop_in_reverse(storage: Storage) -> None:
    log: list[str] = []

    def duty(name: str) -> Callable[[], AbstractAsyncContextManager[None]]:
        @asynccontextmanager
        async def run() -> AsyncIterator[None]:
            log.append(f"start {name}")
            yield
            log.append(f"stop {name}")

        return run

    a = await Leadership(
        storage, [("x", duty("x")), ("y", duty("y"))], seconds=SECONDS, renew_every=RENEW
    ).start()
    await a.stop()
    assert log == ["start x", "start y", "stop y", "stop x"]


def test_the_lease_must_outlive_two_renewals() -> None:
    with pytest.raises(ValueError, match="two renewals"):
        Leadership(None, [], seconds=1.0, renew_every=0.6)  # type: ignore[arg-type]
