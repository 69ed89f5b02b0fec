"""Reads coalesced per agent and window: what merges, what stays apart, and the read hook."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fhir_server.audit import events as events_module
from fhir_server.audit.chain import verify
from fhir_server.audit.events import EventBuilder, bucket
from fhir_server.audit.index import index_event
from fhir_server.audit.journal import JOURNAL
from fhir_server.audit.records import Exchange
from fhir_server.audit.trail import AuditTrail
from fhir_server.context import AccessContext
from fhir_server.errors import FhirError
from fhir_server.interactions import routes
from fhir_server.interactions.observed import Observed
from fhir_server.interactions.service import FhirService
from fhir_server.model.validate import validate_resource
from fhir_server.search.extract import Indexer
from fhir_server.search.registry import load_registry
from fhir_server.storage.base import StoredResource
from fhir_server.storage.sqlite import SQLiteStorage

ANN = AccessContext(subject="ann", scopes=frozenset({"user/*.rs"}), client_id="app")
BOB = AccessContext(subject="bob", scopes=frozenset({"user/*.rs"}), client_id="app")
WHEN = "2026-01-01T00:00:00.000000Z"


@pytest.fixture(scope="module")
def builder() -> EventBuilder:
    registry = load_registry()
    return EventBuilder(registry, Indexer(registry), "https://fhir.example.org/fhir")


def obs(id: str, patient: str, version: int = 1) -> StoredResource:
    body = {"resourceType": "Observation", "id": id, "subject": {"reference": f"Patient/{patient}"}}
    return StoredResource("Observation", id, version, WHEN, False, orjson.dumps(body))


def read(
    rec: StoredResource | None,
    ctx: AccessContext | None = ANN,
    *,
    status: int = 200,
    address: str = "10.0.0.1",
    at: float = 1.7e9,
    path: str | None = None,
) -> Exchange:
    seen = Observed(context=ctx, resources=[rec] if rec else [])
    where = path or (f"{rec.type}/{rec.id}" if rec else "Observation/none")
    return Exchange("rest", "GET", where, b"", status, address, at, seen)


def refs(event: dict[str, object]) -> list[str]:
    return [e["what"]["reference"] for e in event.get("entity", [])]  # type: ignore[attr-defined]


def test_reads_by_one_agent_merge_and_every_other_difference_keeps_them_apart(
    builder: EventBuilder,
) -> None:
    o1, o2, o3 = obs("o1", "p1"), obs("o2", "p19"), obs("o3", "p1")  # p1, p19: one bucket
    search = Exchange("rest", "GET", "Observation", b"code=x", 200, "10.0.0.1", 1.7e9 + 1.5, None)
    built = builder.build_many(
        [
            read(o1, at=1.7e9),
            read(o2, at=1.7e9 + 0.25),
            search,  # not a read: its own event, in its place
            read(o1, at=1.7e9 + 0.5),  # read again: still one entity
            read(o3, at=1.7e9 + 0.75),
            read(o1, BOB),  # another user
            read(o1, address="10.0.0.2"),  # another address
            read(None, status=404),  # another outcome
            read(o1, path="Observation/o1/_history/1"),  # a vread
            read(obs("o4", "p2")),  # a patient in another read bucket
        ]
    )
    assert [e["subtype"][0]["code"] for e in built] == [
        "read",
        "search-type",
        "read",
        "read",
        "read",
        "vread",
        "read",
    ]
    assert bucket("Patient/p1") == bucket("Patient/p19") != bucket("Patient/p2")
    assert refs(built[-1]) == ["Observation/o4", "Patient/p2"]
    merged = built[0]
    validate_resource(merged)
    read_ones = ["Observation/o1", "Observation/o2", "Observation/o3"]
    assert refs(merged) == [*read_ones, "Patient/p1", "Patient/p19"]
    assert merged["period"] == {"start": "2023-11-14T22:13:20.000Z", "end": merged["recorded"]}
    assert merged["recorded"] == "2023-11-14T22:13:20.750Z"
    assert [refs(e) for e in built[2:5]] == [
        ["Observation/o1", "Patient/p1"],
        ["Observation/o1", "Patient/p1"],
        ["Observation/none"],
    ]
    assert built[2]["agent"][0]["name"] == "bob" and "period" not in built[2]
    assert built[4]["outcome"] == "4"
    assert set(index_event(merged)) == set(builder.indexer.extract(merged))


def test_two_versions_of_one_resource_are_two_entities(builder: EventBuilder) -> None:
    (event,) = builder.build_many([read(obs("o1", "p1", 1)), read(obs("o1", "p1", 2))])
    versions = [e["detail"][0]["valueString"] for e in event["entity"] if "detail" in e]
    assert versions == ["1", "2"]


def test_an_event_holds_at_most_max_coalesced_reads(
    builder: EventBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "MAX_COALESCED", 2)
    built = builder.build_many([read(obs(f"max{n}", "p1")) for n in range(5)])
    assert [len(refs(e)) for e in built] == [3, 3, 2]  # 2 + the patient, ..., 1 + the patient


def test_a_group_that_cannot_be_built_leaves_a_bare_event_per_read(
    builder: EventBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(builder, "_build_group", broken)
    built = builder.build_many([read(obs("o1", "p1")), read(obs("o2", "p1"))])
    assert [(e["action"], e["outcome"]) for e in built] == [("E", "0"), ("E", "0")]


@pytest.mark.parametrize(
    "path",
    [
        "Patient/p1",
        "Patient/_history",
        "Patient/$everything",
        "Patient",
        "Nope/p1",
        "Patient/p1/",
        "Patient/p1/_history",
    ],
)
def test_the_read_shortcut_matches_what_the_router_says(builder: EventBuilder, path: str) -> None:
    ex = Exchange("rest", "GET", path, b"", 200, None, 1.7e9, None)
    try:
        wanted = routes.match("GET", path, builder.registry.resource_types)
    except FhirError:
        wanted = None
    got = builder._route(ex)
    assert (got and (got.route, got.type, got.id)) == (
        wanted and (wanted.route, wanted.type, wanted.id)
    )


def test_the_read_hook_gives_the_event_the_middleware_record_gives(
    builder: EventBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = AuditTrail(None, builder)  # type: ignore[arg-type]  # records only: no service
    recorded: list[Exchange] = []
    monkeypatch.setattr(trail, "record", recorded.append)
    monkeypatch.setattr("fhir_server.audit.trail.time.time", lambda: 1.7e9)
    o1 = obs("o1", "p1")
    trail.record_read(ANN, "Observation", "o1", 200, "10.0.0.1", o1)
    trail.record_read(None, "Observation", "o1", 401, "10.0.0.1")
    hooked, refused = recorded
    assert builder.build(hooked) == builder.build(read(o1))
    event = builder.build(refused)
    assert event["agent"][0]["name"] == "unauthenticated" and refs(event) == ["Observation/o1"]


async def test_a_refused_write_keeps_the_built_events_for_the_next_flush(
    builder: EventBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = SQLiteStorage(str(tmp_path / "fhir.db"))
    await storage.open()
    try:
        service = FhirService(storage, registry=builder.registry)
        trail = AuditTrail(service, builder, batch_size=2)
        for n in range(3):
            trail.record_read(ANN, "Observation", f"o{n}", 200, f"10.0.0.{n}", obs(f"o{n}", "p1"))
        real = service.in_transaction

        async def refuse(*args: object, **kwargs: object) -> object:
            raise OSError("disk full")

        monkeypatch.setattr(service, "in_transaction", refuse)
        assert await trail.flush() is False
        assert (len(trail._queue), len(trail._journal)) == (0, 1)  # the window's reads
        monkeypatch.setattr(service, "in_transaction", real)
        await trail.close()
        assert trail.written == 3
        stored = [orjson.loads(r.data) async for r in storage.iter_current("AuditEvent")]
        assert sorted(e["agent"][0]["network"]["address"] for e in stored) == [
            "10.0.0.0",
            "10.0.0.1",
            "10.0.0.2",
        ]
        report = await verify(storage)
        # the reads are journaled (one entry), then stored in one indexing transaction:
        # one chain batch
        assert report.problems == [] and report.batches == 1
    finally:
        await storage.close()


async def test_reads_arriving_while_a_window_is_written_wait_for_the_next_window(
    builder: EventBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a steady load the trail writes one transaction per window, not one per few
    reads: what arrives during a write joins the next window's coalesced event."""
    storage = SQLiteStorage(str(tmp_path / "fhir.db"))
    await storage.open()
    try:
        service = FhirService(storage, registry=builder.registry)
        trail = AuditTrail(service, builder)
        for n in range(3):
            trail.record_read(ANN, "Observation", f"w{n}", 200, "10.0.0.1", obs(f"w{n}", "p1"))
        real = service.in_transaction
        transactions = 0

        async def arriving(*args: object, **kwargs: object) -> object:
            nonlocal transactions
            transactions += 1
            for n in range(3, 6):  # the load goes on while the window is written
                trail.record_read(ANN, "Observation", f"w{n}", 200, "10.0.0.1", obs(f"w{n}", "p1"))
            return await real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(service, "in_transaction", arriving)
        await trail._write_window()
        assert transactions == 1 and len(trail._window.reads) == 3
        await trail._write_window()  # the next window: the three that arrived, one event
        assert transactions == 2 and len(trail._window.reads) == 3
        journaled = await storage.queue_entries(JOURNAL, 0)
        assert [len(orjson.loads(data)["reads"]) for _, data in journaled] == [3, 3]
        monkeypatch.setattr(service, "in_transaction", real)
        await trail.close()  # the last window, then the journal merged: one event
        (stored,) = [orjson.loads(r.data) async for r in storage.iter_current("AuditEvent")]
        assert refs(stored) == [f"Observation/w{n}" for n in range(6)] + ["Patient/p1"]
    finally:
        await storage.close()
