"""The read journal's merge: one agent's read events of many windows as few events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from fhir_server.audit.events import EventBuilder, bucket
from fhir_server.audit.journal import merge, pending
from fhir_server.audit.records import Exchange
from fhir_server.audit.trail import AuditTrail
from fhir_server.cli import app as cli_app
from fhir_server.context import ANONYMOUS, AccessContext
from fhir_server.interactions.observed import Observed
from fhir_server.interactions.service import FhirService
from fhir_server.model.validate import validate_resource
from fhir_server.search.extract import Indexer
from fhir_server.search.registry import load_registry
from fhir_server.storage.base import StoredResource
from fhir_server.storage.sqlite import SQLiteStorage

ANN = AccessContext(subject="ann", scopes=frozenset({"user/*.rs"}), client_id="app")
BOB = AccessContext(subject="bob", scopes=frozenset({"user/*.rs"}), client_id="app")
T0 = 1.7e9  # 2023-11-14T22:13:20Z
WHEN = "2026-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def builder() -> EventBuilder:
    registry = load_registry()
    return EventBuilder(registry, Indexer(registry), "https://fhir.example.org/fhir")


def obs(id: str, patient: str) -> StoredResource:
    body = {"resourceType": "Observation", "id": id, "subject": {"reference": f"Patient/{patient}"}}
    return StoredResource("Observation", id, 1, "2026-01-01T00:00:00Z", False, orjson.dumps(body))


def read(
    rec: StoredResource | None,
    at: float,
    ctx: AccessContext = ANN,
    *,
    status: int = 200,
    path: str | None = None,
) -> Exchange:
    seen = Observed(context=ctx, resources=[rec] if rec else [])
    where = path or (f"{rec.type}/{rec.id}" if rec else "Observation/none")
    return Exchange("rest", "GET", where, b"", status, "10.0.0.1", at, seen)


def window(builder: EventBuilder, *exchanges: Exchange) -> dict[str, Any]:
    """One flush window's journal entry, as stored (JSON)."""
    events, payload = builder.journal_window(exchanges)
    assert events == [] and payload is not None
    return orjson.loads(orjson.dumps(payload))


def refs(event: dict[str, Any]) -> list[str]:
    return [e["what"]["reference"] for e in event.get("entity", [])]


def test_one_agents_windows_merge_naming_each_entity_once(builder: EventBuilder) -> None:
    assert bucket("Patient/p1") == bucket("Patient/p19")  # one read bucket
    o1, o2 = obs("o1", "p1"), obs("o2", "p19")
    first = window(builder, read(o1, T0), read(o1, T0 + 0.5))
    second = window(builder, read(o1, T0 + 1), read(o2, T0 + 2))
    (merged,) = merge([first, second])
    validate_resource(merged)
    assert refs(merged) == ["Observation/o1", "Observation/o2", "Patient/p1", "Patient/p19"]
    assert merged["period"] == {"start": "2023-11-14T22:13:20.000Z", "end": merged["recorded"]}
    assert merged["recorded"] == "2023-11-14T22:13:22.000Z"
    assert merged["entity"][0]["detail"] == [{"type": "version", "valueString": "1"}]
    assert merged["subtype"][0]["code"] == "read" and merged["action"] == "R"


def test_a_single_read_stays_without_a_period(builder: EventBuilder) -> None:
    (alone,) = merge([window(builder, read(obs("o1", "p1"), T0))])
    assert "period" not in alone and refs(alone) == ["Observation/o1", "Patient/p1"]


def test_agents_outcomes_interactions_and_buckets_keep_reads_apart(builder: EventBuilder) -> None:
    assert bucket("Patient/p1") != bucket("Patient/p2")
    o1 = obs("o1", "p1")
    entry = window(
        builder,
        read(o1, T0),
        read(o1, T0, BOB),  # another user
        read(None, T0, status=404),  # another outcome: what it asked for
        read(o1, T0, path="Observation/o1/_history/1"),  # a vread
        read(obs("o4", "p2"), T0),  # a patient in another read bucket
        read(o1, T0 + 1),  # joins the first
    )
    merged = merge([entry])
    assert [(e["subtype"][0]["code"], e["outcome"], refs(e)) for e in merged] == [
        ("read", "0", ["Observation/o1", "Patient/p1"]),
        ("read", "0", ["Observation/o1", "Patient/p1"]),
        ("read", "4", ["Observation/none"]),
        ("vread", "0", ["Observation/o1", "Patient/p1"]),
        ("read", "0", ["Observation/o4", "Patient/p2"]),
    ]
    assert merged[0]["period"]["end"] == "2023-11-14T22:13:21.000Z"
    assert merged[1]["agent"][0]["name"] == "bob"


def test_other_exchanges_are_events_now_and_groups_are_bounded(builder: EventBuilder) -> None:
    search = Exchange("rest", "GET", "Observation", b"code=x", 200, "10.0.0.1", T0, None)
    events, payload = builder.journal_window([search, read(obs("o1", "p1"), T0)])
    assert [e["subtype"][0]["code"] for e in events] == ["search-type"] and payload is not None
    entry = window(builder, *(read(obs(f"g{n}", "p1"), T0) for n in range(5)))
    merged = merge([entry], max_entities=3)  # full at 3: the next read starts another
    assert [refs(e) for e in merged] == [
        ["Observation/g0", "Observation/g1", "Patient/p1"],
        ["Observation/g2", "Observation/g3", "Patient/p1"],
        ["Observation/g4", "Patient/p1"],
    ]


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


def test_the_plain_read_shortcut_journals_what_the_general_path_does(
    builder: EventBuilder,
) -> None:
    patient = StoredResource("Patient", "p7", 3, "2026-01-01T00:00:00Z", False, b"{}")
    exchanges = [
        read(patient, T0),  # the shortcut: a Patient
        read(obs("s1", "p1"), T0),  # the shortcut: a resource in a patient's compartment
        read(obs("s2", "p1"), T0, path="Observation/other"),  # not what it named
        read(None, T0, status=404),  # nothing returned
        read(obs("s1", "p1"), T0, path="Observation/s1/_history/1"),  # a vread
    ]
    _, payload = builder.journal_window(exchanges)
    assert payload is not None
    general = [
        builder.touched(ex, builder._route(ex)) for ex in exchanges
    ]  # the route match and `touched` for each
    journaled = orjson.loads(orjson.dumps(payload))["reads"]  # as the journal stores it
    assert [r[2:] for r in journaled] == orjson.loads(orjson.dumps(general))
    assert [r[2:] for r in journaled[:2]] == [
        [[], ["Patient/p7"]],
        [[["Observation/s1", 1]], ["Patient/p1"]],
    ]


def test_an_unreadable_journal_entry_is_skipped_not_stuck(
    builder: EventBuilder, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry changed in the database file must not stop the journal for good."""
    good = window(builder, read(obs("u1", "p1"), T0))
    bad: list[Any] = [
        ["an", "event", "list"],
        {"heads": good["heads"], "reads": [[5, T0, [], ["Patient/p1"]]]},  # no such head
        {"heads": good["heads"], "reads": [[0, "noon", [], ["Patient/p1"]]]},
        {"heads": good["heads"], "reads": [[0, T0, [["Observation/u1", "1"]], []]]},
        {"heads": [1], "reads": []},
        {"reads": []},
    ]
    (event,) = merge([*bad, good])
    assert refs(event) == ["Observation/u1", "Patient/p1"]
    skipped = [r for r in caplog.records if "unreadable read journal entry" in r.message]
    assert len(skipped) == len(bad)
    assert all("Patient" not in r.getMessage() for r in skipped)  # never the content


def test_a_read_joins_the_window_at_once_holding_no_request_object(tmp_path: Path) -> None:
    """`record` of a read journals it in the current window (strings and numbers, while
    what it touched is at hand), not in the queue; beyond `max_queued` reads the oldest
    are dropped and counted; everything else is queued for the writer."""

    async def run() -> None:
        storage = SQLiteStorage(str(tmp_path / "w.db"))
        await storage.open()
        try:
            trail = _trail(storage)
            trail.max_queued = 3
            for n in range(5):
                trail.record(read(obs(f"o{n}", "p1"), T0 + n))
            trail.record(Exchange("rest", "POST", "Patient", b"", 201, "10.0.0.1", T0, None))
            assert len(trail._queue) == 1  # the create only
            reads = trail._window.reads
            assert [r[1] for r in reads] == [T0 + 2, T0 + 3, T0 + 4] and trail.dropped == 2
            assert all(
                isinstance(x, str | int | float) for r in reads for x in _flat(r)
            )  # no Observed, Exchange or StoredResource kept until the flush
            await trail.close()
            (event,) = [
                orjson.loads(r.data)
                async for r in storage.iter_current("AuditEvent")
                if orjson.loads(r.data)["action"] == "R"
            ]
            kept = ["Observation/o2", "Observation/o3", "Observation/o4", "Patient/p1"]
            assert refs(event) == kept
        finally:
            await storage.close()

    asyncio.run(run())


def _flat(value: Any) -> list[Any]:
    if isinstance(value, tuple | list):
        return [x for v in value for x in _flat(v)]
    return [value]


def test_an_index_pass_lets_other_requests_run_between_its_steps(tmp_path: Path) -> None:
    """A journal's worth of merged events is stored in one transaction, but the event loop
    is not held for its whole length: another task runs between entries and events."""

    async def run() -> tuple[int, int]:
        storage = SQLiteStorage(str(tmp_path / "p.db"))
        await storage.open()
        try:
            trail = _trail(storage)
            trail.max_entities = 5  # many events
            for window_number in range(10):
                for n in range(20):
                    rec = StoredResource("Patient", f"p{n}", 1, WHEN, False, b"{}")
                    trail.record(read(rec, T0 + window_number, path=f"Patient/p{n}"))
                assert await trail.flush()
            ticks = 0
            running = True

            async def ticker() -> None:
                nonlocal ticks
                while running:
                    ticks += 1
                    await asyncio.sleep(0)

            task = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            indexed = await trail.index_journal()
            running = False
            await task
            return indexed, ticks
        finally:
            await storage.close()

    indexed, ticks = asyncio.run(run())
    assert indexed == 10
    assert ticks >= 10 + 4  # at least once per entry merged and per event stored
