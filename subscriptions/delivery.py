"""Delivery of rest-hook notifications: the leader's duty (one process at a time).

Guarantees: at least once, in event order per subscription. The subscriptions' delivered
positions are saved together (one `save_state`) at most `poll` seconds after a
notification is accepted, and when the duty stops, so after a restart or a change of
leader delivery resumes after them; notifications accepted in the last `poll` seconds
before a crash are sent again (receivers de-duplicate by event number, which the
topic-based notifications carry).
Each subscription has its own task, so a slow or dead endpoint delays only itself, by at
most its timeout per attempt. A failed attempt (no 2xx, a redirect, a timeout, a refused
connection) is retried after `backoff` seconds, doubled each time up to `max_backoff`;
after `error_after` failures in a row the subscription's status becomes `error` and
probing continues at the capped interval; the first accepted notification sets it
`active` again and the queued events follow, in order.

Topic-based subscriptions: `requested` ones get a handshake first (`active` when it is
accepted); a `heartbeat` is sent when nothing was sent for `heartbeatPeriod` seconds.
R4 criteria subscriptions are activated without a handshake. Headers from
`channel.header` are sent and never logged; redirects are never followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from fhir_server.model import fhirjson
from fhir_server.storage.base import StorageTx
from subscriptions.model import FHIR_JSON, Subscription, queue_of
from subscriptions.notifications import Event, bundle
from subscriptions.registry import Registry

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

log = logging.getLogger("fhir_server.subscriptions")
POSITIONS = "subscription-delivered"  # saved state: {subscription id: delivered number}


@dataclass(frozen=True, slots=True)
class Options:
    """How delivery behaves (FHIR_SUBSCRIPTION_* settings)."""

    base: str = "http://127.0.0.1:8080/fhir"  # the server's FHIR base, in notifications
    allowed_hosts: frozenset[str] = frozenset()  # hosts http (not https) endpoints may name
    timeout: float = 10.0  # seconds per notification request (a subscription may lower it)
    backoff: float = 1.0
    max_backoff: float = 60.0
    error_after: int = 5
    poll: float = 0.2  # seconds between looks at the outbox heads
    keep_events: int = 1000  # delivered events kept for $events


class DeliveryFailed(Exception):
    """An attempt that was not accepted; the message names why (never a header)."""


class Delivery:
    def __init__(self, service: FhirService, registry: Registry, options: Options) -> None:
        self.service = service
        self.registry = registry
        self.options = options
        self._workers: dict[str, _Worker] = {}
        self._trimmed: dict[str, int] = {}
        self._heads: dict[str, int] = {}
        self._seen_changes = -1
        self.positions: dict[str, int] = {}
        self._saved: dict[str, int] = {}
        self.http: httpx.AsyncClient | None = None

    @asynccontextmanager
    async def duty(self) -> AsyncIterator[None]:
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as http:
            self.http = http
            saved = await self.service.storage.load_state(POSITIONS)
            self.positions = {str(k): int(v) for k, v in fhirjson.loads(saved or b"{}").items()}
            self._saved = dict(self.positions)
            task = asyncio.get_running_loop().create_task(self._watch())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                for worker in list(self._workers.values()):
                    await worker.stop()
                self._workers.clear()
                self.http = None
                await self._save_positions()

    async def _watch(self) -> None:
        storage = self.service.storage
        while True:
            try:
                await self.service.shared.check()  # subscriptions other processes wrote
                heads = await storage.queue_heads("subscription/")
                await self._sync(heads)
                await self._save_positions()
            except Exception:
                log.exception("subscription delivery: reading the outbox failed")
            await asyncio.sleep(self.options.poll)

    async def _sync(self, heads: dict[str, int]) -> None:
        """Start and stop workers as subscriptions change; wake those with new events."""
        if self._seen_changes != self.registry.changes:
            self._seen_changes = self.registry.changes
            await self._reconcile()
        for queue, head in heads.items():
            if self._heads.get(queue) != head:
                worker = self._workers.get(queue.removeprefix("subscription/"))
                if worker is not None:
                    worker.seen(head)
                sub = self.registry.all.get(queue.removeprefix("subscription/"))
                if sub is not None and sub.channel == "websocket":
                    await self._trim_websocket(sub, head)
        self._heads = heads

    async def _reconcile(self) -> None:
        wanted = {
            id: sub
            for id, sub in self.registry.all.items()
            if sub.channel == "rest-hook" and sub.status in ("requested", "active", "error")
        }
        for sub in list(self.registry.all.values()):
            if sub.channel == "websocket" and sub.status == "requested":
                await self.set_status(sub.id, "active")  # the binding is its handshake
        for id in [id for id in self._workers if id not in wanted]:
            await self._workers.pop(id).stop()
            if id not in self.registry.all:  # deleted: its events go with it
                await self.service.storage.queue_drop(queue_of(id))
                self.positions.pop(id, None)
        for id in wanted:
            if id not in self._workers:
                worker = self._workers[id] = _Worker(self, id)
                await worker.start()
                worker.seen(self._heads.get(queue_of(id), 0))

    async def _trim_websocket(self, sub: Subscription, head: int) -> None:
        """Websocket queues are read by the processes holding the sockets; keep the last
        `keep_events` of them."""
        keep = self.options.keep_events
        if head - keep >= self._trimmed.get(sub.id, 0) + 100:
            await self.service.storage.queue_trim(sub.queue, head - keep)
            self._trimmed[sub.id] = head - keep

    async def _save_positions(self) -> None:
        if self.positions != self._saved:
            snapshot = dict(self.positions)
            await self.service.storage.save_state(POSITIONS, fhirjson.dumps(snapshot))
            self._saved = snapshot

    # -- what a worker needs ---------------------------------------------------------

    async def post(self, sub: Subscription, method: str, url: str, body: bytes | None) -> None:
        """One notification request; DeliveryFailed unless the endpoint answers 2xx."""
        assert self.http is not None
        headers = dict(sub.headers)
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
        timeout = min(sub.timeout or self.options.timeout, self.options.timeout)
        try:
            response = await self.http.request(
                method, url, content=body, headers=headers, timeout=timeout
            )
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"{type(error).__name__} from {_host(url)}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"HTTP {response.status_code} from {_host(url)}")

    async def set_status(self, id: str, status: str, error: str | None = None) -> None:
        """Store the subscription's new `status` (and its `error` text), unless it was
        deleted or turned off meanwhile."""
        service = self.service

        async def work(tx: StorageTx) -> None:
            rec = await tx.read("Subscription", id)
            if rec is None or rec.deleted:
                return
            body: dict[str, Any] = fhirjson.loads(rec.data)
            if body.get("status") in (status, "off"):
                return
            body["status"] = status
            if error:
                body["error"] = error
            else:
                body.pop("error", None)
            await service.store(tx, "Subscription", id, body, current=rec, method="PUT")

        await service.in_transaction(None, work)
        log.info("Subscription/%s is now %s", id, status)


def _host(url: str) -> str:
    return urlsplit(url).hostname or "?"


class _Worker:
    """Delivers one subscription's events in order; sleeps between tries when failing."""

    def __init__(self, delivery: Delivery, id: str) -> None:
        self.delivery = delivery
        self.id = id
        self.head = 0
        self.delivered = 0
        self.trimmed = 0
        self.failures = 0
        self.last_sent = time.monotonic()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.delivered = self.delivery.positions.get(self.id, 0)
        self.trimmed = max(0, self.delivered - self.delivery.options.keep_events)
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def seen(self, head: int) -> None:
        if head > self.head:
            self.head = head
            self.wake.set()

    async def _run(self) -> None:
        options = self.delivery.options
        while True:
            sub = self.delivery.registry.all.get(self.id)
            if sub is None:
                return
            try:
                worked = await self._step(sub)
            except DeliveryFailed as failure:
                await self._failed(sub, str(failure))
                delay = options.backoff * 2 ** min(self.failures - 1, 30)
                await asyncio.sleep(min(delay, options.max_backoff))
                continue
            except Exception:
                log.exception("Subscription/%s: delivery failed unexpectedly", self.id)
                await asyncio.sleep(options.max_backoff)
                continue
            if worked:
                await self._recovered(sub)
            else:
                await self._idle(sub)

    async def _step(self, sub: Subscription) -> bool:
        """Do the next thing `sub` needs; False when there was nothing to do."""
        if sub.status == "requested":
            if sub.topic is not None:
                await self._send(sub, "handshake", [])
            await self.delivery.set_status(sub.id, "active")
            return True
        if self.delivered < self.head:
            await self._deliver(sub)
            return True
        if sub.status == "error":  # probe: a heartbeat (topic) or nothing else to send
            if sub.topic is not None:
                await self._send(sub, "heartbeat", [])
                return True
        elif sub.heartbeat and time.monotonic() - self.last_sent >= sub.heartbeat:
            await self._send(sub, "heartbeat", [])
            return True
        return False

    async def _deliver(self, sub: Subscription) -> None:
        storage = self.delivery.service.storage
        limit = sub.max_count if sub.topic is not None else 1
        found = await storage.queue_entries(sub.queue, self.delivered, limit=limit)
        if not found:  # trimmed or dropped meanwhile: nothing left below the head
            self.delivered = self.delivery.positions[sub.id] = self.head
            return
        events = [Event.load(n, payload) for n, payload in found]
        if sub.topic is None:
            await self._send_r4(sub, events[0])
        else:
            await self._send(sub, "event-notification", events)
        self.delivered = self.delivery.positions[sub.id] = events[-1].number
        keep = self.delivery.options.keep_events
        if self.delivered - keep >= self.trimmed + 100:  # forget old events, now and then
            self.trimmed = self.delivered - keep
            await storage.queue_trim(sub.queue, self.trimmed)

    async def _send_r4(self, sub: Subscription, event: Event) -> None:
        assert sub.endpoint is not None
        if sub.content == "empty":
            await self.delivery.post(sub, "POST", sub.endpoint, None)
        else:
            rec = await self.delivery.service.storage.vread(event.type, event.id, event.version)
            url = f"{sub.endpoint.rstrip('/')}/{event.type}/{event.id}"
            await self.delivery.post(sub, "PUT", url, rec.data if rec else b"")
        self.last_sent = time.monotonic()

    async def _send(self, sub: Subscription, kind: str, events: list[Event]) -> None:
        assert sub.endpoint is not None
        resources: dict[int, bytes] = {}
        if sub.content == "full-resource":
            storage = self.delivery.service.storage
            for event in events:
                rec = await storage.vread(event.type, event.id, event.version)
                if rec is not None and not rec.deleted:
                    resources[event.number] = rec.data
        since = events[-1].number if events else self.delivered
        note = bundle(sub, kind, since, events, self.delivery.options.base, resources)
        await self.delivery.post(sub, "POST", sub.endpoint, fhirjson.dumps(note))
        self.last_sent = time.monotonic()

    async def _failed(self, sub: Subscription, why: str) -> None:
        self.failures += 1
        log.warning(
            "Subscription/%s: notification failed (%d in a row): %s", sub.id, self.failures, why
        )
        if self.failures >= self.delivery.options.error_after and sub.status != "error":
            await self.delivery.set_status(sub.id, "error", f"Delivery failed: {why}")

    async def _recovered(self, sub: Subscription) -> None:
        self.failures = 0
        if sub.status == "error":
            await self.delivery.set_status(sub.id, "active")

    async def _idle(self, sub: Subscription) -> None:
        wait = self.delivery.options.max_backoff
        if sub.heartbeat:
            wait = max(0.05, sub.heartbeat - (time.monotonic() - self.last_sent))
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=wait)
