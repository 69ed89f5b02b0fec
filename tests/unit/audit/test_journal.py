"""The read journal's merge: one agent's read events of many windows as few events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from fhir_server.audit.events import REST, EventBuilder, bucket
from fhir_server.audit.journal import merge, mergeable, pending
from fhir_server.audit.trail import AuditTrail
from fhir_server.cli import app as cli_app
from fhir_server.context import ANONYMOUS
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import StoredResource
from fhir_server.storage.sqlite import SQLiteStorage

AGENT = [{"name": "ann", "requestor": True, "network": {"address": "10.0.0.1", "type": "2"}}]


def entity(ref: str, role: str) -> dict[str, Any]:
    return {"what": {"reference": ref}, "role": {"code": role}}


def read_event(at: str, *refs: str, subtype: str = "read", **changes: Any) -> dict[str, Any]:
    """A window's coalesced read event: resources (role 4), then patients (role 1)."""
    entities = [entity(r, "1" if r.startswith("Patient/") else "4") for r in refs]
    entities.sort(key=lambda e: e["role"]["code"] == "1")
    event = {
        "resourceType": "AuditEvent",
        "type": REST,
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": subtype}],
        "action": "R",
        "recorded": at,
        "outcome": "0",
        "agent": AGENT,
        "entity": entities,
    }
    event.update(changes)
    return event


def refs(event: dict[str, Any]) -> list[str]:
    return [e["what"]["reference"] for e in event.get("entity", [])]


T1, T2, T3 = "2026-01-01T00:00:01.000Z", "2026-01-01T00:00:02.000Z", "2026-01-01T00:00:03.000Z"


def test_one_agents_windows_merge_naming_each_entity_once() -> None:
    assert bucket("Patient/p1") == bucket("Patient/p19")  # one read bucket
    first = read_event(T2, "Observation/o1", "Patient/p1")
    first["period"] = {"start": T1, "end": T2}
    second = read_event(T3, "Observation/o1", "Observation/o2", "Patient/p1", "Patient/p19")
    (merged,) = merge([first, second])
    assert refs(merged) == ["Observation/o1", "Observation/o2", "Patient/p1", "Patient/p19"]
    assert merged["period"] == {"start": T1, "end": T3} and merged["recorded"] == T3


def test_a_single_read_stays_without_a_period() -> None:
    (alone,) = merge([read_event(T1, "Patient/p1")])
    assert "period" not in alone and alone["recorded"] == T1 and refs(alone) == ["Patient/p1"]


def test_agents_outcomes_interactions_and_buckets_keep_events_apart() -> None:
    assert bucket("Patient/p1") != bucket("Patient/p2")
    others = [{"name": "bob", "requestor": True}]
    events = [
        read_event(T1, "Patient/p1"),
        read_event(T1, "Patient/p1", agent=others),
        read_event(T1, "Patient/p1", outcome="4"),
        read_event(T1, "Patient/p1", subtype="vread"),
        read_event(T1, "Patient/p2"),  # another bucket
        read_event(T2, "Patient/p1"),  # joins the first
    ]
    merged = merge(events)
    assert len(merged) == 5
    assert merged[0]["period"] == {"start": T1, "end": T2}
    assert [refs(e) for e in merged] == [["Patient/p1"]] * 4 + [["Patient/p2"]]


def test_other_events_pass_unchanged_and_groups_are_bounded() -> None:
    search = read_event(T1, "Patient/p1", subtype="search-type", action="E")
    operation = read_event(T1, "Patient/p1")
    operation["subtype"][0]["display"] = "$everything"
    assert not mergeable(search) and not mergeable(operation)
    assert merge([search, operation, search]) == [search, operation, search]
    many = [read_event(T1, f"Observation/o{n}", "Patient/p1") for n in range(5)]
    merged = merge(many, max_entities=3)  # full at 3: the next event starts a new one
    assert [len(refs(e)) for e in merged] == [3, 3, 2]  # o0, o1 + p1; o2, o3 + p1; o4 + p1


def test_verify_and_export_say_how_many_journal_entries_wait(tmp_path: Path) -> None:
    """After a crash, journaled reads wait for the next server process: the offline tools
    do not count them as AuditEvents, and say so."""
    database = tmp_path / "fhir.db"
    assert asyncio.run(_journal_a_read(database)) == 1  # then the process "crashes"
    env = {"FHIR_DATABASE": str(database)}
    for command in (["audit", "verify"], ["audit", "export"]):
        result = CliRunner().invoke(cli_app, command, env=env)
        assert result.exit_code == 0, result.output
        assert "1 read journal entry not yet stored as AuditEvents" in result.output
    left, events = asyncio.run(_next_process(database))  # the next process stores it
    assert left == 0 and [refs(e) for e in events] == [["Patient/p1"]]


def _trail(storage: SQLiteStorage) -> AuditTrail:
    service = FhirService(storage)
    return AuditTrail(service, EventBuilder(service.registry, service.indexer, "http://x"))


async def _journal_a_read(database: Path) -> int:
    storage = SQLiteStorage(str(database))
    await storage.open()
    try:
        trail = _trail(storage)
        rec = StoredResource("Patient", "p1", 1, "2026-01-01T00:00:00Z", False, b"{}")
        trail.record_read(ANONYMOUS, "Patient", "p1", 200, "10.0.0.1", rec)
        assert await trail.flush()  # journaled, not yet indexed
        return await pending(storage)
    finally:
        await storage.close()


async def _next_process(database: Path) -> tuple[int, list[dict[str, Any]]]:
    storage = SQLiteStorage(str(database))
    await storage.open()
    try:
        await _trail(storage).close()  # what a server does when it stops
        events = [orjson.loads(r.data) async for r in storage.iter_current("AuditEvent")]
        return await pending(storage), events
    finally:
        await storage.close()
