"""The read journal: reads made durable at once, stored as AuditEvents later in bulk.

Indexing an AuditEvent costs two B-tree entries per patient it names (`entity` and
`patient`), and the patients a busy server reads in one second are scattered over the
whole index: written every second, each entry dirties a page of its own. So reads (and
vreads) take two steps:

1. every flush window (`FHIR_AUDIT_FLUSH_SECONDS`) its reads are appended to the journal
   in a compact form (`events.JournalWindow`: the event head of each agent, interaction
   and status once, then per read its time, the resource versions and the patients it
   touched), one outbox-queue entry (`JOURNAL`) in one transaction: durable, a
   sequential write, nothing indexed;
2. every `FHIR_AUDIT_INDEX_SECONDS` (a minute by default), before each interaction that
   reads AuditEvents, and at shutdown, the journal's entries are merged (`Merger`: the
   reads of the same agent, interaction, status and read bucket become one event naming
   each resource and patient once, its `period` their first and last access) and stored
   as AuditEvents with their index and chain record, in one transaction that also moves
   the cursor (`AuditChain/journal`, the last entry indexed), letting other requests run
   between the entries merged and the events stored. The cursor is written with the
   storage port's version check, so two processes indexing at once cannot both store the
   same entries: the second finds the cursor moved and stops.

Every other event (writes, searches, operations, sign-ins, refusals of anything but a
read) is stored at once. A crash loses what was not yet journaled (at most one flush
window); what was journaled is indexed when a server process next runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson

from fhir_server.audit.chain import CHAIN
from fhir_server.audit.events import bucket, instant, object_entity, patient_entity
from fhir_server.storage.base import Storage

JOURNAL = "audit-reads"  # the outbox queue of journaled read events
CURSOR = "journal"  # AuditChain/journal: {"upto": the last journal entry indexed}
MAX_ENTITIES = 2_000  # entities per merged event at most (keeps each event bounded)
log = logging.getLogger("fhir_server.audit")


async def cursor(storage: Storage) -> tuple[int, int]:
    """The last journal entry indexed, and the cursor record's version (0: none yet)."""
    rec = await storage.read(CHAIN, CURSOR)
    return (int(orjson.loads(rec.data)["upto"]), rec.version) if rec else (0, 0)


async def pending(storage: Storage, most: int = 1_000_000) -> int:
    """Journal entries (one per process and flush window) not yet stored as AuditEvents."""
    upto, _ = await cursor(storage)
    return len(await storage.queue_entries(JOURNAL, upto, limit=most))


def merge(
    payloads: Iterable[dict[str, Any]], max_entities: int = MAX_ENTITIES
) -> list[dict[str, Any]]:
    """The reads of journal entries (`EventBuilder.journal_window`) as few events (see
    `Merger`)."""
    merger = Merger(max_entities)
    for payload in payloads:
        merger.add(payload)
    return merger.events()


class Merger:
    """Journal entries merged one at a time (so that a caller can let other work run
    between them): the reads of the same agent, interaction and status, and in the same
    read bucket (`events.bucket`, of the read's first patient, else of its resource),
    become one event naming each resource version and patient once (resources first, then
    patients, each in order of first access), `recorded` the last access and `period` the
    first and last; a group is full at `max_entities` entities, and the next read starts
    another."""

    def __init__(self, max_entities: int = MAX_ENTITIES) -> None:
        self.max_entities = max_entities
        self._groups: list[_Group] = []
        self._open: dict[tuple[bytes, int], _Group] = {}  # the group each kind of read joins
        self._buckets: dict[str, int] = {}

    def add(self, payload: Any) -> None:
        """Merge the reads of one journal entry (an unreadable one is logged and skipped)."""
        try:
            heads, reads = _readable(payload)
        except (KeyError, TypeError, ValueError, IndexError):
            log.error("audit: an unreadable read journal entry was skipped (%s)", _shape(payload))
            return
        keys = [orjson.dumps(_alike(head), option=orjson.OPT_SORT_KEYS) for head in heads]
        buckets, open_groups = self._buckets, self._open
        for head, when, objects, patients in reads:
            first = patients[0] if patients else objects[0][0] if objects else ""
            number = buckets.get(first)
            if number is None:
                number = buckets[first] = bucket(first)
            group = open_groups.get((keys[head], number))
            if group is None or len(group.objects) + len(group.patients) >= self.max_entities:
                group = open_groups[(keys[head], number)] = _Group(heads[head], when)
                self._groups.append(group)
            for ref, version in objects:
                group.objects[(ref, version)] = None
            for ref in patients:
                group.patients[ref] = None
            group.first = min(group.first, when)
            group.last = max(group.last, when)
            group.count += 1

    def events(self) -> list[dict[str, Any]]:
        """The merged events of every entry added."""
        return [group.event() for group in self._groups]


def _readable(payload: Any) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """The heads and reads of a journal entry, checked to have the shape `merge` reads (an
    entry changed in the database file must not stop the journal for good)."""
    heads, reads = payload["heads"], payload["reads"]
    if not isinstance(heads, list) or not all(isinstance(h, dict) for h in heads):
        raise TypeError("heads")
    for head, when, objects, patients in reads:
        if type(head) is not int or not 0 <= head < len(heads):
            raise IndexError("head")
        if type(when) not in (int, float):
            raise TypeError("time")
        for ref, version in objects:
            if not isinstance(ref, str) or not isinstance(version, int | None):
                raise TypeError("objects")
        if not all(isinstance(ref, str) for ref in patients):
            raise TypeError("patients")
    return heads, reads


def _shape(payload: Any) -> str:
    """What kind of value an unreadable entry held (for the log: never its content)."""
    return type(payload).__name__


def _alike(head: dict[str, Any]) -> dict[str, Any]:
    """What reads must share to be one event: their head but its time."""
    return {k: v for k, v in head.items() if k not in ("recorded", "period")}


class _Group:
    """The reads of one merged event (`merge` adds them); `event()` builds it."""

    def __init__(self, head: dict[str, Any], when: float) -> None:
        self.head = head
        self.objects: dict[tuple[str, int | None], None] = {}
        self.patients: dict[str, None] = {}
        self.first = self.last = when
        self.count = 0

    def event(self) -> dict[str, Any]:
        event = dict(self.head)
        event["recorded"] = instant(self.last)
        if self.count > 1:
            event["period"] = {"start": instant(self.first), "end": event["recorded"]}
        entities = [object_entity(ref, version) for ref, version in self.objects]
        entities += [patient_entity(ref) for ref in self.patients]
        if entities:
            event["entity"] = entities
        return event
