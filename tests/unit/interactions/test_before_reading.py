"""`FhirService.before_reading`: the hook runs before every interaction that reads its type
(read, vread, search, history, a compartment search of it, a search whose `_type` names
it), not before writes, and not before interactions on other types."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server.context import ANONYMOUS, SYSTEM, DenyAll
from fhir_server.errors import FhirError, Forbidden
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.sqlite import SQLiteStorage

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}
BASIC = {"resourceType": "Basic", "id": "b1", "code": {"text": "x"}}

READS_OF_BASIC = [
    ("GET", "Basic/b1", ()),
    ("GET", "Basic/b1/_history/1", ()),
    ("GET", "Basic/b1/_history", ()),
    ("GET", "Basic/_history", ()),
    ("GET", "Basic", (("code:text", "x"),)),
    ("POST", "Basic/_search", ()),
    ("GET", "Patient/p1/Basic", ()),
    ("GET", "", (("_type", "Patient,Basic"),)),
]
NOT_READS_OF_BASIC = [
    ("GET", "Patient/p1", ()),
    ("GET", "Patient", (("gender", "female"),)),
    ("GET", "", (("_type", "Patient"),)),
    ("PUT", "Basic/b2", ()),
    ("DELETE", "Basic/b1", ()),
]


@pytest.fixture
async def service(tmp_path: Path):
    storage = SQLiteStorage(tmp_path / "hook.db")
    await storage.open()
    svc = FhirService(storage)
    await svc.handle(Request("PUT", "Patient/p1", body=PATIENT, context=SYSTEM))
    await svc.handle(Request("PUT", "Basic/b1", body=BASIC, context=SYSTEM))
    calls: list[str] = []

    async def hook() -> None:
        calls.append("Basic")

    svc.before_reading("Basic", hook)
    yield svc, calls
    await storage.close()


async def _handle(svc: FhirService, method: str, path: str, query: tuple[Any, ...]) -> None:
    body = {**BASIC, "id": path.split("/")[-1]} if method == "PUT" else None
    with contextlib.suppress(FhirError):  # what it answers does not matter, only the hook
        await svc.handle(Request(method, path, query, body=body, context=SYSTEM))


@pytest.mark.parametrize(("method", "path", "query"), READS_OF_BASIC)
async def test_the_hook_runs_before_each_read_of_its_type(service, method, path, query) -> None:
    svc, calls = service
    await _handle(svc, method, path, query)
    assert calls == ["Basic"]


@pytest.mark.parametrize(("method", "path", "query"), NOT_READS_OF_BASIC)
async def test_writes_and_other_types_do_not_wait_for_it(service, method, path, query) -> None:
    svc, calls = service
    await _handle(svc, method, path, query)
    assert calls == []


async def test_the_hook_runs_before_the_interaction_reads(service) -> None:
    """What the hook writes is what the read finds (the audit trail's catch-up)."""
    svc, _ = service

    async def store() -> None:
        body = {**BASIC, "id": "late"}
        await svc.handle(Request("PUT", "Basic/late", body=body, context=SYSTEM))

    svc.before_reading("Basic", store)
    found = await svc.handle(Request("GET", "Basic/late", context=SYSTEM))
    assert found.status == 200


async def test_a_caller_the_policy_refuses_does_not_run_the_hook(tmp_path: Path) -> None:
    """A refused request cannot make the server do the hook's work (the audit trail's
    catch-up is a write): the hook is skipped, and the interaction answers 403 as ever."""
    storage = SQLiteStorage(tmp_path / "deny.db")
    await storage.open()
    try:
        svc = FhirService(storage, policy=DenyAll())
        calls: list[str] = []

        async def hook() -> None:
            calls.append("Basic")

        svc.before_reading("Basic", hook)
        for path, query in (("Basic", ()), ("Basic/b1", ()), ("", (("_type", "Basic"),))):
            with pytest.raises(Forbidden):
                await svc.handle(Request("GET", path, query, context=ANONYMOUS))
        assert calls == []
        await svc.handle(Request("GET", "Basic", context=SYSTEM))  # the system may
        assert calls == ["Basic"]
    finally:
        await storage.close()


async def test_no_hook_runs_inside_a_write_transaction(service) -> None:
    """A transaction bundle's read entry does not run the hook: a hook that writes (the
    audit trail's catch-up) would wait for the transaction that waits for it."""
    svc, calls = service

    async def writes() -> None:
        await svc.handle(Request("PUT", "Basic/w", body={**BASIC, "id": "w"}, context=SYSTEM))
        calls.append("wrote")

    svc.before_reading("Basic", writes)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {**BASIC, "id": "t1"}, "request": {"method": "PUT", "url": "Basic/t1"}},
            {"request": {"method": "GET", "url": "Basic/b1"}},
            {"request": {"method": "GET", "url": "Basic?code:text=x"}},
        ],
    }
    done = await asyncio.wait_for(
        svc.handle(Request("POST", "", body=bundle, context=SYSTEM)), timeout=30
    )
    assert done.status == 200
    body = orjson.loads(done.body) if isinstance(done.body, bytes) else done.body
    assert [e["response"]["status"][:3] for e in body["entry"]] == ["201", "200", "200"]
    assert calls == []
    await svc.handle(Request("GET", "Basic/b1", context=SYSTEM))  # outside: it runs
    assert calls == ["Basic", "wrote"]
