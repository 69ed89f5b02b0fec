"""The inbound path's ordering: one patient's messages commit in arrival order, while
another patient's message does not wait for them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.ingest import Ingestor
from fhir_server.interactions.request import Request, Response
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage, StorageTx
from tests.support.engines import ENGINE_FACTORIES
from tests.support.loaded import call


def adt(control: str, mrn: str, family: str, event: str = "A08") -> bytes:
    return (
        f"MSH|^~\\&|LAB|NORTH|FHIR|HUB|20240102030405||ADT^{event}^ADT_A01|{control}|P|"
        f"2.5.1\rEVN|{event}|20240102030405\r"
        f"PID|1||{mrn}^^^HOSP^MR||{family}^John||19800101|M\r"
    ).encode()


class Recording(FhirService):
    """Records when each transaction starts and ends; a family name starting with "Slow"
    holds its transaction open for a while."""

    def __init__(self, storage: Storage) -> None:
        super().__init__(storage)
        self.events: list[str] = []

    async def handle(self, req: Request, tx: StorageTx | None = None) -> Response:
        if req.path != "" or not isinstance(req.body, dict):
            return await super().handle(req, tx)
        family = next(
            e["resource"]["name"][0]["family"]
            for e in req.body["entry"]
            if e["resource"]["resourceType"] == "Patient"
        )
        self.events.append(f"start {family}")
        if family.startswith("Slow"):
            await asyncio.sleep(0.4)
        try:
            return await super().handle(req)
        finally:
            self.events.append(f"end {family}")


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Ingestor, Recording]]:
    storage = await ENGINE_FACTORIES["sqlite"](tmp_path)
    service = Recording(storage)
    inbox = await Inbox(tmp_path / "inbox.db").open()
    try:
        yield Ingestor(service, inbox), service
    finally:
        await inbox.close()
        await storage.close()


async def test_one_patient_in_order_others_in_parallel(setup: tuple[Ingestor, Recording]) -> None:
    ingestor, service = setup
    acks: dict[str, bytes] = {}

    def reply_for(name: str):
        async def reply(ack: bytes) -> None:
            acks[name] = ack

        return reply

    tasks = []
    for name, raw in (
        ("a1", adt("A1", "P1", "Slowfirst", "A01")),
        ("a2", adt("A2", "P1", "Second")),
        ("b1", adt("B1", "P2", "Other", "A01")),
    ):
        tasks.append(asyncio.create_task(ingestor.receive(raw, reply_for(name))))
        await asyncio.sleep(0.02)  # arrival order: a1, a2, b1
    await asyncio.gather(*tasks)

    assert all(b"MSA|AA|" in ack for ack in acks.values()), acks
    events = service.events
    # P2's message committed while P1's first one was still open ...
    assert events.index("end Other") < events.index("end Slowfirst")
    # ... and P1's second message started only after its first had ended
    assert events.index("start Second") > events.index("end Slowfirst")
    found = await call(service, "GET", "Patient", query=(("identifier", "urn:id:HOSP|P1"),))
    assert [e["resource"]["name"][0]["family"] for e in found["entry"]] == ["Second"]


async def test_a_merge_waits_for_the_merged_patients_messages(
    setup: tuple[Ingestor, Recording],
) -> None:
    ingestor, service = setup
    merge = (
        b"MSH|^~\\&|LAB|NORTH|FHIR|HUB|20240102030405||ADT^A40^ADT_A39|M1|P|2.5.1\r"
        b"EVN|A40|20240102030405\rPID|1||P1^^^HOSP^MR||Survivor^John\r"
        b"MRG|P2^^^HOSP^MR\r"
    )
    acks: list[bytes] = []

    async def reply(ack: bytes) -> None:
        acks.append(ack)

    first = asyncio.create_task(ingestor.receive(adt("X1", "P2", "Slowmerged", "A01"), reply))
    await asyncio.sleep(0.05)
    await ingestor.receive(merge, reply)
    await first
    assert all(b"MSA|AA|" in ack for ack in acks), acks
    assert service.events.index("start Survivor") > service.events.index("end Slowmerged")
    merged = await call(service, "GET", "Patient", query=(("identifier", "urn:id:HOSP|P2"),))
    [patient] = [e["resource"] for e in merged["entry"]]
    assert patient["name"][0]["family"] == "Slowmerged" and patient["active"] is False
