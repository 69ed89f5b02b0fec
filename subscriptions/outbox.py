"""The write trigger: one outbox entry per subscription a written version matches.

It runs inside the writing transaction (`FhirService.add_trigger`), so an entry exists
exactly when the write committed, and the outbox queue numbers it in commit order: the
subscription's event number. A subscription is told of a version only when its creator
could read that version (see `visible`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.model import fhirjson
from fhir_server.storage.base import StorageTx, StoredResource
from subscriptions.model import Subscription
from subscriptions.notifications import Event
from subscriptions.registry import Registry

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService


class Outbox:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def trigger(self, service: FhirService, tx: StorageTx, rec: StoredResource) -> None:
        matcher = self.registry.matcher
        if rec.deleted or not matcher.watches(rec.type):
            return
        body = fhirjson.loads(rec.data)
        values = service.indexer.values_of(body, matcher.params(rec.type))
        told: set[str] = set()
        for sub, f in matcher.candidates(rec.type, values):
            if sub.id in told or not await matcher.matches(tx, f, rec, values):
                continue
            if not visible(service, sub, rec):
                continue
            told.add(sub.id)
            payload = Event.payload(rec.type, rec.id, rec.version, rec.method, rec.last_updated)
            await tx.enqueue(sub.queue, payload)


def visible(service: FhirService, sub: Subscription, rec: StoredResource) -> bool:
    """Whether the subscription's creator (its recorded access context) may read `rec`;
    a subscription the server itself wrote, or one written while authorization was off
    (the policy then allows everything), sees everything."""
    return sub.creator is None or service.policy.visible(sub.creator, rec)
