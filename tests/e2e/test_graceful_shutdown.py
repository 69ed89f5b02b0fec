"""SIGTERM during a write load: the server stops accepting, finishes what it started, and
exits; every write it acknowledged is stored, and every other request was either stored or
answered with an error the client saw. MLLP connections close after the message they are
answering, whose ACK the sender receives."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.test_hl7_mllp import adt, field, mllp
from tests.support.server import ServerProcess, free_port

WRITERS = 6


def _large_oru(control: str, mrn: str, results: int = 800) -> bytes:
    """An ORU^R01 with `results` OBX: a message that takes a while to process."""
    segments = [
        f"MSH|^~\\&|LAB|NORTH|FHIR|HUB|20240102030405||ORU^R01^ORU_R01|{control}|P|2.5.1",
        f"PID|1||{mrn}^^^HOSP^MR||Doe^Jane||19800101|F",
        "OBR|1|P1|F1|24323-8^Comprehensive metabolic panel^LN|||20240102030405|||||||||||||||||F",
    ]
    segments += [
        f"OBX|{i}|NM|{2000 + i}-{i % 10}^Analyte {i}^LN||{i}.5|mg/dL^mg/dL^UCUM|1-40|N|||F"
        for i in range(1, results + 1)
    ]
    return ("\r".join(segments) + "\r").encode()


def _load(base: str, stop: threading.Event, acknowledged: list[str], failed: list[str]) -> None:
    """Create Patients until `stop`, recording acknowledged ids and requests that failed."""
    with httpx.Client(timeout=30) as client:
        n = 0
        while not stop.is_set():
            n += 1
            marker = f"w{threading.get_ident()}-{n}"
            body = {"resourceType": "Patient", "identifier": [{"value": marker}]}
            try:
                response = client.post(base + "/Patient", json=body)
            except httpx.TransportError:
                failed.append(marker)  # the client saw it fail: allowed, stored or not
                time.sleep(0.05)
                continue
            if response.status_code == 201:
                acknowledged.append(response.json()["id"])
            else:
                failed.append(marker)


def test_sigterm_during_writes_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    database = tmp_path / "fhir.db"
    server = ServerProcess(database, FHIR_SHUTDOWN_TIMEOUT="20").start(timeout=120)
    stop = threading.Event()
    acknowledged: list[str] = []
    failed: list[str] = []
    threads = [
        threading.Thread(target=_load, args=(server.base, stop, acknowledged, failed))
        for _ in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(acknowledged) >= 50, "the load did not get going"
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(60)  # bounded by FHIR_SHUTDOWN_TIMEOUT
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    # uvicorn ends by re-raising the signal it handled: -SIGTERM is its clean exit
    assert code in (0, -signal.SIGTERM), server.log.read_text(errors="replace")[-3000:]
    answered_at_stop = len(acknowledged)
    restarted = ServerProcess(database).start(timeout=120)
    try:
        with httpx.Client(timeout=30) as client:
            missing = [
                pid
                for pid in acknowledged
                if client.get(f"{restarted.base}/Patient/{pid}").status_code != 200
            ]
            total = client.get(restarted.base + "/Patient", params={"_summary": "count"})
    finally:
        restarted.stop()
    assert missing == [], f"{len(missing)} acknowledged writes lost"
    stored = total.json()["total"]
    # nothing was stored that neither got its 201 nor was seen failing by its client
    assert answered_at_stop <= stored <= answered_at_stop + len(failed)


def test_sigterm_lets_an_mllp_message_in_progress_be_answered(tmp_path: Path) -> None:
    mllp_port = free_port()
    server = ServerProcess(tmp_path / "fhir.db", FHIR_MLLP_PORT=str(mllp_port)).start(timeout=120)

    async def scenario() -> tuple[bytes, bytes]:
        async with mllp(mllp_port) as (reader, writer):
            writer.writeblock(adt("GRACE-1", "G-1"))
            await writer.drain()
            first = bytes(await asyncio.wait_for(reader.readblock(), 30))
            async with httpx.AsyncClient() as client:
                scraped = await client.get(server.base.removesuffix("/fhir") + "/metrics")
            text = scraped.text
            assert 'fhir_hl7_messages_total{ack_code="AA",message_type="ADT^A01"} 1.0' in text
            assert "fhir_hl7_inbox_depth 0.0" in text and "fhir_hl7_dead_letters 0.0" in text
            writer.writeblock(_large_oru("GRACE-2", "G-2"))  # in flight when SIGTERM comes
            await writer.drain()
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            second = bytes(await asyncio.wait_for(reader.readblock(), 30))
            return first, second

    try:
        first, second = asyncio.run(scenario())
        assert server.process is not None
        assert server.process.wait(60) in (0, -signal.SIGTERM)
    finally:
        server.stop()
    assert field(first, "MSA", 1) == "AA"
    assert field(second, "MSA", 1) == "AA" and field(second, "MSA", 2) == "GRACE-2"
    restarted = ServerProcess(tmp_path / "fhir.db").start(timeout=120)
    try:
        found = httpx.get(restarted.base + "/Patient", params={"identifier": "G-2"}).json()
    finally:
        restarted.stop()
    assert found["total"] == 1
