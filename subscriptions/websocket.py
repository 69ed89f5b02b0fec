"""The websocket channel for browser clients (Backport IG), without a web framework.

A client gets a token from `$get-ws-binding-token`, opens the websocket the answer names
and sends `bind-with-token <token>`. The token (random, 256 bits, valid `TOKEN_SECONDS`)
is stored hashed in the database, so any server process accepts it. The connection then
receives, as text frames, a handshake Bundle per bound subscription and one
event-notification Bundle per batch of events committed after the binding, read from the
subscriptions' outbox queues by the process that holds the connection (no leader needed).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fhir_server.model import fhirjson
from fhir_server.storage.base import Storage
from subscriptions import model
from subscriptions.notifications import Event, bundle

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

TOKEN_SECONDS = 60
PATH = "/subscriptions/websocket"
_KEY = "subscription-ws-token/"
POLL = 0.2


def url(base: str) -> str:
    """The websocket URL beside the FHIR base (`ws(s)://host/subscriptions/websocket`)."""
    scheme, _, rest = base.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'wss' if scheme == 'https' else 'ws'}://{host}{PATH}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(storage: Storage, ids: list[str]) -> tuple[str, str]:
    """A new token for `ids`, and when it expires (FHIR dateTime)."""
    token = secrets.token_urlsafe(32)
    expires = time.time() + TOKEN_SECONDS
    value = fhirjson.dumps({"ids": ids, "expires": expires, "check": _digest(token)})
    await storage.save_state(_KEY + _digest(token), value)
    when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return token, when


async def bind(storage: Storage, message: str) -> list[str] | None:
    """The subscription ids a `bind-with-token <token>` message binds (None: refused).
    A token binds once."""
    verb, _, token = message.strip().partition(" ")
    if verb != "bind-with-token" or not token or len(token) > 200:
        return None
    key = _KEY + _digest(token)
    raw = await storage.load_state(key)
    if raw is None:
        return None
    await storage.save_state(key, None)
    saved = fhirjson.loads(raw)
    if not hmac.compare_digest(str(saved.get("check")), _digest(token)):
        return None
    if float(saved.get("expires", 0)) < time.time():
        return None
    return [str(id) for id in saved.get("ids") or ()]


async def notifications(service: FhirService, ids: list[str], base: str) -> AsyncIterator[bytes]:
    """A handshake per subscription, then the notification Bundles of events committed
    after it, for as long as the caller iterates."""
    storage = service.storage
    subs: dict[str, model.Subscription] = {}
    positions: dict[str, int] = {}
    for id in ids:
        rec = await storage.read("Subscription", id)
        if rec is None or rec.deleted:
            continue
        sub = model.read(fhirjson.loads(rec.data), service.registry, None, service.codes)
        subs[id] = sub
        heads = await storage.queue_heads(sub.queue)
        positions[id] = heads.get(sub.queue, 0)
        yield fhirjson.dumps(bundle(sub, "handshake", positions[id], [], base))
    while subs:
        sent = False
        for id, sub in subs.items():
            found = await storage.queue_entries(sub.queue, positions[id], limit=sub.max_count)
            if not found:
                continue
            events = [Event.load(n, payload) for n, payload in found]
            resources: dict[int, bytes] = {}
            if sub.content == "full-resource":
                for event in events:
                    rec = await storage.vread(event.type, event.id, event.version)
                    if rec is not None and not rec.deleted:
                        resources[event.number] = rec.data
            positions[id] = events[-1].number
            note = bundle(sub, "event-notification", positions[id], events, base, resources)
            yield fhirjson.dumps(note)
            sent = True
        if not sent:
            await asyncio.sleep(POLL)
