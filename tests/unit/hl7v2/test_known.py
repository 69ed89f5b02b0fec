"""Shared resources (sender, applications, places, doctors) a process committed unchanged are
left out of the next messages' transactions, with their references pointing at what is
stored; what is remembered expires, and a failed transaction forgets it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.ingest import Ingestor
from adapters.hl7v2.known import Known
from fhir_server.interactions.request import Request, Response
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage, StorageTx
from tests.support.engines import ENGINE_FACTORIES
from tests.support.loaded import call


def adt(n: int, *, place: str = "W1^101^A^HOSP") -> bytes:
    return (
        f"MSH|^~\\&|REG|NORTH|FHIR|HUB|20240102030405||ADT^A01^ADT_A01|K{n}|P|2.5.1\r"
        "EVN|A01|20240102030405\r"
        f"PID|1||MRN{n}^^^HOSP^MR||Known^Pat{n}||19800101|F\r"
        f"PV1|1|I|{place}||||D1^Attend^Al^^^^^^HOSP||||||||||||V{n}^^^HOSP\r"
    ).encode()


class Recording(FhirService):
    """Keeps the resource types of each transaction it handles."""

    def __init__(self, storage: Storage) -> None:
        super().__init__(storage, base_url="http://test/fhir")
        self.sent: list[list[str]] = []

    async def handle(self, req: Request, tx: StorageTx | None = None) -> Response:
        if req.path == "" and isinstance(req.body, dict) and "entry" in req.body:
            self.sent.append([e["resource"]["resourceType"] for e in req.body["entry"]])
        return await super().handle(req, tx)


@pytest.fixture(params=sorted(ENGINE_FACTORIES))
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Recording]:
    storage = await ENGINE_FACTORIES[request.param](tmp_path)
    try:
        yield Recording(storage)
    finally:
        await storage.close()


@pytest.fixture
async def ingestor(service: Recording, tmp_path: Path) -> AsyncIterator[Ingestor]:
    inbox = await Inbox(tmp_path / "inbox.db").open()
    try:
        yield Ingestor(service, inbox)
    finally:
        await inbox.close()


async def receive(ingestor: Ingestor, raw: bytes) -> bytes:
    acks: list[bytes] = []

    async def reply(ack: bytes) -> None:
        acks.append(ack)

    await ingestor.receive(raw, reply)
    return acks[-1]


async def encounter_of(service: FhirService, n: int) -> dict[str, Any]:
    found = await call(service, "GET", "Encounter", query=(("identifier", f"urn:id:HOSP|V{n}"),))
    resource: dict[str, Any] = found["entry"][0]["resource"]
    return resource


SHARED = {"Organization", "Device", "Location", "Practitioner"}


async def test_unchanged_shared_resources_are_not_sent_again(
    ingestor: Ingestor, service: Recording
) -> None:
    assert b"MSA|AA" in await receive(ingestor, adt(1))
    assert b"MSA|AA" in await receive(ingestor, adt(2))
    first, second = service.sent
    assert set(first) >= SHARED
    assert not SHARED & set(second)
    assert {"Patient", "Encounter", "MessageHeader", "Provenance"} <= set(second)
    one, two = await encounter_of(service, 1), await encounter_of(service, 2)
    assert two["location"] == one["location"]  # the same stored Location, by its id
    assert two["participant"][0]["individual"] == one["participant"][0]["individual"]
    assert two["location"][0]["location"]["reference"].startswith("Location/")
    read = await call(service, "GET", two["location"][0]["location"]["reference"])
    assert read["name"] == "A"  # the bed, as the first message stored it
    locations = await call(service, "GET", "Location", query=(("_summary", "count"),))
    assert locations["total"] == 4  # facility, ward, room, bed: once


async def test_changed_content_is_sent(ingestor: Ingestor, service: Recording) -> None:
    await receive(ingestor, adt(1))
    await receive(ingestor, adt(2, place="W1^102^A^HOSP"))  # another room: its two levels
    second = service.sent[1]
    assert second.count("Location") == 2
    assert "Organization" not in second


async def test_what_is_known_expires(ingestor: Ingestor, service: Recording) -> None:
    ingestor._known = Known(ttl=0.0)
    await receive(ingestor, adt(1))
    await receive(ingestor, adt(2))
    assert set(service.sent[1]) >= SHARED


async def test_a_failed_transaction_forgets(ingestor: Ingestor, service: Recording) -> None:
    await receive(ingestor, adt(1))
    bad = adt(2) + b"OBX|1|NM|23  45^Odd code^L||7|mg|||||F\r"  # a code FHIR refuses
    ack = await receive(ingestor, bad)
    assert b"MSA|AE" in ack
    assert b"OBX^1^3" in ack  # located, although shared entries were left out before it
    await receive(ingestor, adt(3))
    assert set(service.sent[-1]) >= SHARED
