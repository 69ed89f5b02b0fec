"""The audit trail's hash chain on every engine: batches written by several trails at once
stay one line, searches find the events, and `verify` sees each kind of tampering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from fhir_server.audit import install
from fhir_server.audit.chain import CHAIN, HEAD, verify
from fhir_server.audit.events import EventBuilder
from fhir_server.audit.records import Exchange
from fhir_server.audit.trail import AuditTrail
from fhir_server.context import SYSTEM, AccessContext
from fhir_server.errors import Forbidden
from fhir_server.interactions.observed import Observed
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.model.validate import validate_resource
from fhir_server.storage.base import Storage, StoredResource

KEY = b"a signing secret for the test"
READER = AccessContext(subject="app", scopes=frozenset({"system/*.cruds"}), client_id="app")


def exchange(n: int, patient: StoredResource) -> Exchange:
    """A read from its own address: reads by one agent in one window would be one event."""
    seen = Observed(context=READER, resources=[patient])
    address = f"10.0.0.{n}"
    return Exchange("rest", "GET", f"Patient/{patient.id}", b"", 200, address, time.time(), seen)


def search(n: int, patient: StoredResource) -> Exchange:
    """A search that found `patient`: an event each, stored in the batch of its window
    (reads go through the read journal first)."""
    seen = Observed(context=READER, resources=[patient])
    query = f"name=Doe&n={n}".encode()
    return Exchange("rest", "GET", "Patient", query, 200, "10.0.0.1", time.time(), seen)


def trail(svc: FhirService, key: bytes | None = KEY) -> AuditTrail:
    builder = EventBuilder(svc.registry, svc.indexer, "http://test/fhir")
    return AuditTrail(svc, builder, batch_size=5, key=key)


async def patient(svc: FhirService) -> StoredResource:
    body = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]}
    await svc.handle(Request("PUT", "Patient/p1", body=body, context=SYSTEM))
    rec = await svc.storage.read("Patient", "p1")
    assert rec is not None
    return rec


async def two_trails(
    storage: Storage, count: int, record: Callable[[int, StoredResource], Exchange]
) -> tuple[FhirService, list[AuditTrail]]:
    """Two trails on one database, as two server processes, given `count` records in turn."""
    svc = FhirService(storage)
    install(svc)
    rec = await patient(svc)
    trails = [trail(svc), trail(svc)]
    for n in range(count):
        trails[n % 2].record(record(n, rec))
    return svc, trails


async def test_concurrent_trails_keep_one_chain_that_verifies(storage: Storage) -> None:
    svc, trails = await two_trails(storage, 12, search)
    await asyncio.gather(*(t.close() for t in trails))
    report = await verify(storage, KEY)
    assert report.problems == []
    assert (report.batches, report.events) == (4, 12)  # 3 + 3 per trail (batch size 5)
    head = await storage.read(CHAIN, HEAD)
    assert head is not None and orjson.loads(head.data)["batch"] == 4
    found = await svc.handle(
        Request("GET", "AuditEvent", (("patient", "Patient/p1"), ("_count", "50")), context=SYSTEM)
    )
    entries = orjson.loads(found.body)["entry"]  # type: ignore[arg-type]
    assert len(entries) == 12
    event = entries[0]["resource"]
    validate_resource(event)  # a valid R4 AuditEvent
    assert event["action"] == "E" and event["outcome"] == "0"
    assert event["subtype"][0]["code"] == "search-type"
    assert event["agent"][0]["network"]["address"] == "10.0.0.1"


async def test_concurrent_trails_index_the_read_journal_once(storage: Storage) -> None:
    svc, trails = await two_trails(storage, 8, exchange)
    for t in trails:  # each journals its window (one entry: 4 reads); nothing is indexed
        assert await t.flush() and t.written == 0
    assert [r async for r in storage.iter_current("AuditEvent")] == []
    taken = await asyncio.gather(*(t.index_journal() for t in trails))
    assert sorted(taken) == [0, 2]  # one took both entries; the other found them taken
    assert await asyncio.gather(*(t.index_journal() for t in trails)) == [0, 0]
    await asyncio.gather(*(t.close() for t in trails))
    report = await verify(storage, KEY)
    assert report.problems == [] and (report.batches, report.events) == (1, 8)
    found = await svc.handle(
        Request("GET", "AuditEvent", (("patient", "Patient/p1"), ("_count", "50")), context=SYSTEM)
    )
    events = [e["resource"] for e in orjson.loads(found.body)["entry"]]  # type: ignore[arg-type]
    assert sorted(e["agent"][0]["network"]["address"] for e in events) == sorted(
        f"10.0.0.{n}" for n in range(8)
    )  # one event per agent (each read came from its own address)
    assert {e["subtype"][0]["code"] for e in events} == {"read"}


async def test_reads_by_one_agent_in_one_window_are_one_event_that_names_each(
    storage: Storage,
) -> None:
    svc = FhirService(storage)
    install(svc)
    rec = await patient(svc)
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}
    obs["subject"] = {"reference": "Patient/p1"}
    await svc.handle(Request("PUT", "Observation/o1", body=obs, context=SYSTEM))
    found = await storage.read("Observation", "o1")
    assert found is not None
    log = trail(svc)
    log.record(exchange(1, rec))  # through the middleware's record
    log.record_read(READER, "Observation", "o1", 200, "10.0.0.1", found)  # a fast path's
    log.record_read(READER, "Observation", "o1", 200, "10.0.0.1", found)  # read again
    log.record_read(READER, "Observation", "o2", 404, "10.0.0.1")  # another outcome
    log.record_read(None, "Observation", "o1", 401, "10.0.0.1")  # refused: nobody known
    await log.close()
    assert (await verify(storage, KEY)).problems == []

    async def search(*query: tuple[str, str]) -> list[dict[str, Any]]:
        bundle = await svc.handle(Request("GET", "AuditEvent", query, context=SYSTEM))
        return [e["resource"] for e in orjson.loads(bundle.body).get("entry", [])]  # type: ignore[arg-type]

    events = await search(("_count", "50"))
    assert len(events) == 3
    (merged,) = await search(("outcome", "0"))
    validate_resource(merged)
    refs = [e["what"]["reference"] for e in merged["entity"]]
    assert refs == ["Observation/o1", "Patient/p1"]  # each once, the patient last
    period = merged["period"]
    assert isinstance(period, dict) and period["start"] <= period["end"] == merged["recorded"]
    (refused,) = [e for e in events if e["agent"][0]["name"] == "unauthenticated"]
    by_entity = {e["id"] for e in await search(("entity", "Observation/o1"))}
    assert by_entity == {merged["id"], refused["id"]}  # what a refused read asked for, too
    assert len(await search(("patient", "Patient/p1"))) == 1
    answer = await svc.handle(Request("GET", "Patient/p1/$access-log", context=SYSTEM))
    body = answer.body if isinstance(answer.body, bytes) else orjson.dumps(answer.body)
    (access,) = orjson.loads(body)["parameter"]
    parts = {p["name"]: p for p in access["part"] if p["name"] != "resource"}
    assert parts["period"]["valuePeriod"] == period
    assert [
        p["valueReference"]["reference"] for p in access["part"] if p["name"] == "resource"
    ] == ["Observation/o1"]
    (missing,) = await search(("entity", "Observation/o2"))
    assert missing["outcome"] == "4" and "period" not in missing


async def test_verify_names_the_batch_of_a_changed_removed_or_unchained_event(
    storage: Storage,
) -> None:
    svc = FhirService(storage)
    install(svc)
    rec = await patient(svc)
    log = trail(svc)
    for n in range(7):
        log.record(search(n, rec))
    await log.close()
    assert (await verify(storage, KEY)).problems == []
    assert (await verify(storage, b"another key")).problems  # the signatures tell
    events = [r async for r in storage.iter_current("AuditEvent")]
    changed = events[6]  # in batch 2
    body = orjson.loads(changed.data)
    body["outcome"] = "4"
    async with storage.transaction() as tx:  # a new version, as a writer with access would
        await tx.write(
            StoredResource(
                "AuditEvent", changed.id, 2, changed.last_updated, False, orjson.dumps(body)
            ),
            (),
            expected_version=1,
        )
        await tx.write(
            StoredResource("AuditEvent", "forged", 1, changed.last_updated, False, changed.data),
            (),
            expected_version=0,
        )
        await tx.write(
            StoredResource(
                "AuditEvent", events[0].id, 2, changed.last_updated, True, b"", "DELETE"
            ),
            (),
            expected_version=1,
        )
    problems = (await verify(storage, KEY)).problems
    assert f"batch 2: AuditEvent/{changed.id} was changed (version 2, chained 1)" in problems
    assert f"batch 1: AuditEvent/{events[0].id} was removed" in problems
    assert "AuditEvent/forged is in no batch: it was inserted" in problems


async def test_nobody_writes_audit_events_through_the_service(storage: Storage) -> None:
    svc = FhirService(storage)
    install(svc)
    event = {"resourceType": "AuditEvent", "recorded": "2026-01-01T00:00:00Z"}
    for method, path in (
        ("POST", "AuditEvent"),
        ("PUT", "AuditEvent/x"),
        ("DELETE", "AuditEvent/x"),
    ):
        try:
            await svc.handle(Request(method, path, body=event, context=READER))
        except Forbidden as refused:
            assert "written by the server only" in str(refused)
        else:
            raise AssertionError(f"{method} {path} was not refused")
    assert [r async for r in storage.iter_current("AuditEvent")] == []
