"""Notification Bundles of the Backport IG for R4, and the SubscriptionStatus they open with.

https://hl7.org/fhir/uv/subscriptions-backport/notifications.html -- "a Bundle of type
history" whose first entry is the SubscriptionStatus, in R4 a Parameters resource
(profile `backport-subscription-status-r4`) with `subscription`, `topic`, `status`,
`type` (handshake, heartbeat, event-notification, query-status, query-event),
`events-since-subscription-start` and one `notification-event` (event-number,
timestamp, focus) per event carried; then one entry per event: the focus resource for
`full-resource`, its fullUrl and request only for `id-only`, nothing for `empty`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_server.model import fhirjson
from subscriptions.model import Subscription

STATUS_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-status-r4"
)
NOTIFICATION_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-notification-r4"
)


@dataclass(frozen=True, slots=True)
class Event:
    """One outbox entry: event `number` of its subscription, the version it is about."""

    number: int
    type: str
    id: str
    version: int
    method: str
    at: str

    @classmethod
    def load(cls, number: int, payload: bytes) -> Event:
        d = fhirjson.loads(payload)
        return cls(number, d["type"], d["id"], int(d["version"]), d["method"], d["at"])

    @staticmethod
    def payload(type: str, id: str, version: int, method: str, at: str) -> bytes:
        record = {"type": type, "id": id, "version": version, "method": method, "at": at}
        return fhirjson.dumps(record)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def status_parameters(
    sub: Subscription,
    kind: str,
    since_start: int,
    events: list[Event],
    base: str,
    error: str | None = None,
) -> dict[str, Any]:
    """The SubscriptionStatus (R4: Parameters) of `sub` for a notification of `kind`."""
    parts: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sub.id}"}},
        {"name": "topic", "valueCanonical": sub.topic or sub.filters[0].text},
        {"name": "status", "valueCode": sub.status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(since_start)},
    ]
    for event in events:
        inner: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": event.at},
        ]
        if sub.content != "empty":
            reference = f"{base}/{event.type}/{event.id}/_history/{event.version}"
            inner.append({"name": "focus", "valueReference": {"reference": reference}})
        parts.append({"name": "notification-event", "part": inner})
    if error:
        parts.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parts,
    }


def bundle(
    sub: Subscription,
    kind: str,
    since_start: int,
    events: list[Event],
    base: str,
    resources: dict[int, bytes] | None = None,
) -> dict[str, Any]:
    """A notification Bundle; `resources` holds the focus JSON per event (full-resource)."""
    status = status_parameters(sub, kind, since_start, events, base)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status['id']}",
            "resource": status,
            "request": {"method": "GET", "url": f"{base}/Subscription/{sub.id}/$status"},
            "response": {"status": "200"},
        }
    ]
    if sub.content != "empty":
        for event in events:
            entry: dict[str, Any] = {
                "fullUrl": f"{base}/{event.type}/{event.id}",
                "request": {
                    "method": event.method if event.method in ("POST", "PUT") else "PUT",
                    "url": f"{event.type}/{event.id}" if event.method != "POST" else event.type,
                },
                "response": {"status": "201" if event.method == "POST" else "200"},
            }
            data = (resources or {}).get(event.number)
            if sub.content == "full-resource" and data:
                entry["resource"] = fhirjson.loads(data)
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": now(),
        "entry": entries,
    }
