"""The read journal: coalesced read events made durable at once, indexed later in bulk.

Indexing an AuditEvent costs two B-tree entries per patient it names (`entity` and
`patient`), and the patients a busy server reads in one second are scattered over the
whole index: written every second, each entry dirties a page of its own. So the events of
reads (`mergeable`) take two steps:

1. every flush window (`FHIR_AUDIT_FLUSH_SECONDS`) the window's read events are appended
   to the journal, one outbox-queue entry (`JOURNAL`) in one transaction: durable, a
   sequential write, nothing indexed;
2. every `FHIR_AUDIT_INDEX_SECONDS` (and at shutdown) the journal's entries are merged
   (`merge`: the read events of the same agent, interaction, outcome and read bucket
   (`events.bucket`) become one event naming each resource and patient once, its `period`
   their first and last access) and
   stored as AuditEvents with their index and chain record, in one transaction that also
   moves the cursor (`AuditChain/journal`, the last entry indexed). The cursor is written
   with the storage port's version check, so two processes indexing at once cannot both
   store the same entries: the second finds the cursor moved and stops.

Every other event (writes, searches, operations, sign-ins, refusals of anything but a
read) is stored at once, as before. A crash loses what was not yet journaled (at most one
flush window); what was journaled is indexed when a server process next runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from fhir_server.audit.chain import CHAIN
from fhir_server.audit.events import COALESCED, REST, bucket
from fhir_server.storage.base import Storage

JOURNAL = "audit-reads"  # the outbox queue of journaled read events
CURSOR = "journal"  # AuditChain/journal: {"upto": the last journal entry indexed}
MAX_ENTITIES = 2_000  # entities per merged event at most (keeps each event bounded)
_APART = frozenset({"entity", "recorded", "period"})  # what merged events may differ in


async def cursor(storage: Storage) -> tuple[int, int]:
    """The last journal entry indexed, and the cursor record's version (0: none yet)."""
    rec = await storage.read(CHAIN, CURSOR)
    return (int(orjson.loads(rec.data)["upto"]), rec.version) if rec else (0, 0)


async def pending(storage: Storage, most: int = 1_000_000) -> int:
    """Journal entries (one per process and flush window) not yet stored as AuditEvents."""
    upto, _ = await cursor(storage)
    return len(await storage.queue_entries(JOURNAL, upto, limit=most))


def mergeable(event: dict[str, Any]) -> bool:
    """Whether `event` records reads (read or vread over REST), which the journal merges."""
    subtype: list[dict[str, Any]] = event.get("subtype") or []
    return (
        event.get("type") == REST
        and len(subtype) == 1
        and subtype[0].get("code") in COALESCED
        and "display" not in subtype[0]
    )


def merge(
    events: Iterable[dict[str, Any]], max_entities: int = MAX_ENTITIES
) -> list[dict[str, Any]]:
    """The journaled read events as few events: those alike but for their entities and
    times become one (each entity once: resources first, then patients, each in order of
    first access; `recorded` the last access, `period` the first and last), at most
    about `max_entities` entities each (an event joins a group until it holds that many).
    Events that are not `mergeable` pass unchanged."""
    out: list[dict[str, Any]] = []
    groups: list[_Group] = []
    open_groups: dict[bytes, _Group] = {}  # the group each kind of event now joins
    for event in events:
        if not mergeable(event):
            out.append(event)
            continue
        key = orjson.dumps(
            [_bucket_of(event), {k: v for k, v in event.items() if k not in _APART}],
            option=orjson.OPT_SORT_KEYS,
        )
        group = open_groups.get(key)
        if group is None or len(group) >= max_entities:  # full: the next event starts one
            group = open_groups[key] = _Group(event)
            groups.append(group)
            out.append(group.event)
        group.add(event, event.get("entity") or ())
    for group in groups:
        group.close()
    return out


def _bucket_of(event: dict[str, Any]) -> int:
    """The read bucket (`events.bucket`) the builder put the event's reads in: that of its
    patients, else of the resource it names (every read of one event is in one bucket)."""
    entities: list[dict[str, Any]] = event.get("entity") or []
    refs = [e.get("what", {}).get("reference") for e in entities]
    patients = [
        r for e, r in zip(entities, refs, strict=True) if e.get("role", {}).get("code") == "1"
    ]
    first = patients[0] if patients else next((r for r in refs if r), None)
    return bucket(first) if first else -1


class _Group:
    """One merged event being built; `close` writes its entities and times into it."""

    def __init__(self, first: dict[str, Any]) -> None:
        self.event = {k: v for k, v in first.items() if k not in _APART}
        self.objects: dict[bytes, dict[str, Any]] = {}
        self.patients: dict[bytes, dict[str, Any]] = {}
        self.start = self.end = first["recorded"]
        self.added = 0  # events merged in
        self.spans = False  # whether it covers more than one access

    def __len__(self) -> int:
        return len(self.objects) + len(self.patients)

    def add(self, event: dict[str, Any], entities: Iterable[dict[str, Any]]) -> None:
        for entity in entities:
            role = (entity.get("role") or {}).get("code")
            (self.patients if role == "1" else self.objects).setdefault(
                orjson.dumps(entity), entity
            )
        period = event.get("period") or {}
        self.added += 1
        self.spans = self.spans or bool(period) or self.added > 1
        self.start = min(self.start, period.get("start", event["recorded"]))
        self.end = max(self.end, period.get("end", event["recorded"]))

    def close(self) -> None:
        self.event["recorded"] = self.end
        if self.spans:
            self.event["period"] = {"start": self.start, "end": self.end}
        if self:
            self.event["entity"] = [*self.objects.values(), *self.patients.values()]
