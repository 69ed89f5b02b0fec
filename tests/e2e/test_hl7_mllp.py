"""HL7 v2 over MLLP against a real `fhir-server serve`, sent with python-hl7's own client.

Each message becomes one FHIR transaction; the ACKs (AA/AE/AR, CA in enhanced mode) carry
MSA-2 = MSH-10 and, on error, ERR with the table 0357 code; the listener keeps serving
after bad input; duplicates get the original ACK; dead letters are listed and replayed
with `fhir-server hl7`; a message acknowledged before a SIGKILL is there after restart.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hl7.mllp import open_hl7_connection

from tests.support.server import ServerProcess, free_port

MAX_BYTES = 64 * 1024
MAX_CONNECTIONS = 12
IDLE_SECONDS = 2.5
IDENTIFIER_SYSTEM = "urn:id:HOSP"  # PID-3.4 HOSP, no configured system


def adt(
    control: str,
    mrn: str,
    family: str = "Doe",
    *,
    event: str = "A01",
    version: str = "2.5.1",
    ack_modes: str = "",
    type: str = "ADT",
) -> bytes:
    modes = f"|||{ack_modes}" if ack_modes else ""
    return (
        f"MSH|^~\\&|LAB|NORTH|FHIR|HUB|20240102030405||{type}^{event}^ADT_A01|{control}|P|"
        f"{version}{modes}\r"
        f"EVN|{event}|20240102030405\r"
        f"PID|1||{mrn}^^^HOSP^MR||{family}^John||19800101|M\r"
        "PV1|1|I|W^1^2\r"
    ).encode()


def field(ack: bytes, segment: str, number: int) -> str:
    for line in ack.decode().split("\r"):
        if line.startswith(segment):
            parts = line.split("|")
            index = number if segment != "MSH" else number - 1
            return parts[index] if index < len(parts) else ""
    return ""


@asynccontextmanager
async def mllp(port: int) -> AsyncIterator[tuple[Any, Any]]:
    """hl7.mllp's reader and writer (`readblock`, `writeblock`); the library has no types."""
    reader, writer = await open_hl7_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        await writer.wait_closed()


async def exchange(port: int, *messages: bytes) -> list[bytes]:
    """Send each message on one connection and read one ACK for it."""
    acks = []
    async with mllp(port) as (reader, writer):
        for message in messages:
            writer.writeblock(message)
            await writer.drain()
            acks.append(bytes(await asyncio.wait_for(reader.readblock(), 15)))
    return acks


def cli(*args: str, server: ServerProcess) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "fhir-server"), "hl7", *args]
    return subprocess.run(command, env=server.env, capture_output=True, text=True, timeout=60)


def patients(http: httpx.Client, mrn: str) -> list[dict[str, Any]]:
    bundle = http.get("Patient", params={"identifier": f"{IDENTIFIER_SYSTEM}|{mrn}"}).json()
    return [entry["resource"] for entry in bundle.get("entry", [])]


@pytest.fixture(scope="module")
def hl7_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    database = tmp_path_factory.mktemp("hl7") / "fhir.db"
    process = ServerProcess(
        database,
        FHIR_MLLP_PORT=str(free_port()),
        FHIR_MLLP_MAX_MESSAGE_BYTES=str(MAX_BYTES),
        FHIR_MLLP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        FHIR_MLLP_IDLE_TIMEOUT=str(IDLE_SECONDS),
    ).start()
    yield process
    process.stop()


@pytest.fixture
def port(hl7_server: ServerProcess) -> int:
    return int(hl7_server.env["FHIR_MLLP_PORT"])


@pytest.fixture
def http(hl7_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=hl7_server.base, timeout=30, headers={"Accept": "application/fhir+json"}
    ) as client:
        yield client


async def test_adt_a01_is_accepted_and_its_patient_is_there(port: int, http: httpx.Client) -> None:
    [ack] = await exchange(port, adt("A01-1", "m-100", "Moreau"))
    assert field(ack, "MSA", 1) == "AA" and field(ack, "MSA", 2) == "A01-1"
    assert field(ack, "MSH", 3) == "FHIR" and field(ack, "MSH", 5) == "LAB"
    assert field(ack, "MSH", 9) == "ACK^A01^ACK"
    [patient] = patients(http, "m-100")
    assert patient["name"][0]["family"] == "Moreau"


async def test_many_messages_on_one_connection(port: int, http: httpx.Client) -> None:
    messages = [adt(f"MANY-{n}", f"m-2{n}", f"Family{n}") for n in range(8)]
    acks = await exchange(port, *messages)
    assert [field(a, "MSA", 2) for a in acks] == [f"MANY-{n}" for n in range(8)]
    assert {field(a, "MSA", 1) for a in acks} == {"AA"}
    assert len(patients(http, "m-27")) == 1


async def test_a_batch_gets_a_batch_of_acks(port: int, http: httpx.Client) -> None:
    batch = (
        b"FHS|^~\\&|LAB|NORTH|FHIR|HUB|20240102030405||||F-9\r"
        b"BHS|^~\\&|LAB|NORTH|FHIR|HUB|20240102030405||||B-9\r"
        + adt("BATCH-1", "m-350", "Batchone")
        + adt("BATCH-2", "m-351", "Batchtwo")
        + b"BTS|2\rFTS|1\r"
    )
    [answer] = await exchange(port, batch)
    lines = answer.decode().strip("\r").split("\r")
    assert [line[:3] for line in lines] == ["FHS", "BHS", "MSH", "MSA", "MSH", "MSA", "BTS", "FTS"]
    bhs = lines[1].split("|")  # bhs[n - 1] is BHS-n, as for MSH
    assert bhs[11] == "B-9" and bhs[2] == "FHIR" and bhs[4] == "LAB"
    assert [line.split("|")[1:3] for line in lines if line.startswith("MSA")] == [
        ["AA", "BATCH-1"],
        ["AA", "BATCH-2"],
    ]
    assert field(answer, "BTS", 1) == "2"
    assert patients(http, "m-350")[0]["name"][0]["family"] == "Batchone"
    assert patients(http, "m-351")[0]["name"][0]["family"] == "Batchtwo"


async def test_duplicate_gets_the_original_ack_and_changes_nothing(
    port: int, http: httpx.Client
) -> None:
    message = adt("DUP-1", "m-300")
    [first] = await exchange(port, message)
    [patient] = patients(http, "m-300")
    [again] = await exchange(port, message)
    assert again == first
    [after] = patients(http, "m-300")
    assert after["meta"]["versionId"] == patient["meta"]["versionId"]


async def test_bad_input_is_answered_and_the_connection_keeps_serving(port: int) -> None:
    cases = [
        (b"PID|1||123^^^HOSP^MR\r", "AR", "100"),  # no MSH
        (b"MSH|^~", "AR", "207"),  # truncated
        (bytes(range(256)) * 4, "AR", "100"),  # binary junk
        (adt("BIG-1", "m-400") + b"NTE|1||" + b"x" * MAX_BYTES + b"\r", "AR", "207"),
        (adt("TYPE-1", "m-401", type="ZZZ", event="Z01"), "AR", "200"),
        (adt("VER-1", "m-402", version="9.9"), "AR", "203"),
        (adt("PID3-1", "").replace(b"PID|1||^^^HOSP^MR|", b"PID|1|||"), "AE", "101"),
    ]
    async with mllp(port) as (reader, writer):
        for message, code, error in cases:
            writer.writeblock(message)
            await writer.drain()
            ack = bytes(await asyncio.wait_for(reader.readblock(), 15))
            assert field(ack, "MSA", 1) == code, (message[:40], ack)
            assert field(ack, "ERR", 3).split("^")[0] == error, (message[:40], ack)
            assert field(ack, "ERR", 3).endswith("^HL70357")
        assert field(ack, "ERR", 2) == "PID^1^3"
        assert field(ack, "MSA", 2) == "PID3-1"
        writer.write(b"no start block\x1c\r")  # not MLLP-framed
        await writer.drain()
        ack = bytes(await asyncio.wait_for(reader.readblock(), 15))
        assert field(ack, "MSA", 1) == "AR"
        # an ACK is never acknowledged: the next block we read answers the next message
        writer.writeblock(
            b"MSH|^~\\&|LAB|NORTH|FHIR|HUB|20240102||ACK^A01^ACK|X9|P|2.5.1\rMSA|AA|Z1\r"
        )
        writer.writeblock(adt("AFTER-1", "m-403"))
        await writer.drain()
        ack = bytes(await asyncio.wait_for(reader.readblock(), 15))
        assert (field(ack, "MSA", 1), field(ack, "MSA", 2)) == ("AA", "AFTER-1")


async def test_enhanced_mode_commit_then_application_ack(port: int, http: httpx.Client) -> None:
    async with mllp(port) as (reader, writer):
        writer.writeblock(adt("ENH-1", "m-500", ack_modes="AL|AL"))
        await writer.drain()
        commit = bytes(await asyncio.wait_for(reader.readblock(), 15))
        application = bytes(await asyncio.wait_for(reader.readblock(), 15))
        assert (field(commit, "MSA", 1), field(commit, "MSA", 2)) == ("CA", "ENH-1")
        assert (field(application, "MSA", 1), field(application, "MSA", 2)) == ("AA", "ENH-1")
        # MSH-16 ER: no application ACK on success, so the next block is the next CA
        writer.writeblock(adt("ENH-2", "m-501", ack_modes="AL|ER"))
        writer.writeblock(adt("ENH-3", "m-502", ack_modes="AL|ER"))
        await writer.drain()
        first = bytes(await asyncio.wait_for(reader.readblock(), 15))
        second = bytes(await asyncio.wait_for(reader.readblock(), 15))
        assert [field(a, "MSA", 2) for a in (first, second)] == ["ENH-2", "ENH-3"]
        assert {field(a, "MSA", 1) for a in (first, second)} == {"CA"}
    assert len(patients(http, "m-500")) == 1


async def test_dead_letter_listed_shown_and_replayed(
    port: int, http: httpx.Client, hl7_server: ServerProcess
) -> None:
    identifier = {"system": IDENTIFIER_SYSTEM, "value": "m-600"}
    ids = [
        http.post(
            "Patient",
            json={"resourceType": "Patient", "identifier": [identifier]},
            headers={"Content-Type": "application/fhir+json"},
        ).json()["id"]
        for _ in range(2)
    ]
    [ack] = await exchange(port, adt("DEAD-1", "m-600", "Ambiguous"))
    assert field(ack, "MSA", 1) == "AE"  # two Patients match the identifier

    listed = cli("dead-letters", server=hl7_server)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if "DEAD-1" in line)
    letter = line.split("\t")[0]
    shown = cli("show", letter, server=hl7_server)
    assert shown.returncode == 0 and "PID|1||m-600^^^HOSP^MR" in shown.stdout
    assert "MSA|AE|DEAD-1" in shown.stdout

    assert http.delete(f"Patient/{ids[1]}").status_code in (200, 204)
    replayed = cli("replay", letter, server=hl7_server)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "AA" in replayed.stdout
    [patient] = patients(http, "m-600")
    assert patient["name"][0]["family"] == "Ambiguous"
    assert "DEAD-1" not in cli("dead-letters", server=hl7_server).stdout
    # the sender's resend now gets the ACK of the replay
    [again] = await exchange(port, adt("DEAD-1", "m-600", "Ambiguous"))
    assert field(again, "MSA", 1) == "AA"


def test_send_command(
    port: int, http: httpx.Client, hl7_server: ServerProcess, tmp_path: Path
) -> None:
    file = tmp_path / "messages.hl7"
    file.write_bytes((adt("SEND-1", "m-700") + adt("SEND-2", "m-701")).replace(b"\r", b"\n"))
    sent = cli("send", str(file), "--to", f"127.0.0.1:{port}", server=hl7_server)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "1: AA SEND-1" in sent.stdout and "2: AA SEND-2" in sent.stdout
    assert len(patients(http, "m-701")) == 1


async def test_acknowledged_message_survives_sigkill(tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess(tmp_path / "fhir.db", FHIR_MLLP_PORT=str(port)).start()
    try:
        [ack] = await exchange(port, adt("KILL-1", "m-800", "Survivor"))
        assert field(ack, "MSA", 1) == "AA"
        async with mllp(port) as (reader, writer):  # enhanced, no application ACK wanted
            writer.writeblock(adt("KILL-2", "m-801", "Committed", ack_modes="AL|NE"))
            await writer.drain()
            commit = bytes(await asyncio.wait_for(reader.readblock(), 15))
            server.kill()
        assert field(commit, "MSA", 1) == "CA"
        server = ServerProcess(tmp_path / "fhir.db", FHIR_MLLP_PORT=str(port))
        server.start()
        with httpx.Client(base_url=server.base, timeout=30) as http:
            assert patients(http, "m-800")[0]["name"][0]["family"] == "Survivor"
            assert patients(http, "m-801")[0]["name"][0]["family"] == "Committed"
    finally:
        server.stop()


def test_inbox_file_is_beside_the_database(hl7_server: ServerProcess) -> None:
    assert os.path.exists(f"{hl7_server.database}.hl7inbox.db")


def test_outbound_feeds_reach_our_own_listener(tmp_path: Path) -> None:
    import orjson

    from adapters.hl7v2.inbox import InboxFile

    port, nowhere = free_port(), free_port()
    destinations = [
        {"name": "self", "application": "FHIR-SERVER", "host": "127.0.0.1", "port": port},
        {"name": "nowhere", "host": "127.0.0.1", "port": nowhere, "events": ["ADT^A08"]},
    ]
    server = ServerProcess(
        tmp_path / "fhir.db",
        FHIR_MLLP_PORT=str(port),
        FHIR_HL7_DESTINATIONS=orjson.dumps(destinations).decode(),
        FHIR_HL7_OUTBOUND_ATTEMPTS="2",
        FHIR_HL7_OUTBOUND_BACKOFF="0.1",
        FHIR_HL7_ACK_TIMEOUT="5",
    ).start()
    try:
        with httpx.Client(
            base_url=server.base, timeout=30, headers={"Content-Type": "application/fhir+json"}
        ) as http:
            patient = http.post(
                "Patient",
                json={
                    "resourceType": "Patient",
                    "identifier": [{"system": IDENTIFIER_SYSTEM, "value": "m-900"}],
                    "name": [{"family": "Outbound", "given": ["Olga"]}],
                },
            ).json()
            subject = {"reference": f"Patient/{patient['id']}"}
            loinc = {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}
            observation = http.post(
                "Observation",
                json={
                    "resourceType": "Observation",
                    "status": "final",
                    "code": loinc,
                    "subject": subject,
                    "valueQuantity": {
                        "value": 5.4,
                        "unit": "mmol/L",
                        "system": "http://unitsofmeasure.org",
                        "code": "mmol/L",
                    },
                },
            ).json()
            http.post(
                "DiagnosticReport",
                json={
                    "resourceType": "DiagnosticReport",
                    "status": "final",
                    "code": loinc,
                    "subject": subject,
                    "result": [{"reference": f"Observation/{observation['id']}"}],
                },
            )
        inbox = InboxFile(f"{server.database}.hl7inbox.db")
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                rows = inbox.db.execute(
                    "SELECT destination, event, state FROM outbound ORDER BY id"
                ).fetchall()
                received = inbox.db.execute(
                    "SELECT message_type, state FROM messages WHERE sender LIKE 'FHIR-SERVER|%'"
                ).fetchall()
                if (
                    {r[2] for r in rows} <= {"sent", "dead"}
                    and len(rows) == 3
                    and len(received) == 2
                    and all(s != "received" for _, s in received)
                ):
                    break
                time.sleep(0.2)
            assert sorted(rows) == [
                ("nowhere", "ADT^A08", "dead"),
                ("self", "ADT^A08", "sent"),
                ("self", "ORU^R01", "sent"),
            ]
            assert sorted(received) == [("ADT^A08", "done"), ("ORU^R01", "done")]
        finally:
            inbox.close()
        listed = cli("dead-letters", server=server)
        assert "ADT^A08 to nowhere Patient/" in listed.stdout
    finally:
        server.stop()


def test_http_ingest_answers_with_the_ack(hl7_server: ServerProcess, http: httpx.Client) -> None:
    url = hl7_server.base.removesuffix("/fhir") + "/hl7v2"
    headers = {"Content-Type": "x-application/hl7-v2+er7"}
    response = httpx.post(url, content=adt("HTTP-1", "m-900", "Posted"), headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("x-application/hl7-v2+er7")
    assert (field(response.content, "MSA", 1), field(response.content, "MSA", 2)) == (
        "AA",
        "HTTP-1",
    )
    assert patients(http, "m-900")[0]["name"][0]["family"] == "Posted"
    junk = httpx.post(url, content=b"\x00\xffnot hl7", headers=headers)
    assert field(junk.content, "MSA", 1) == "AR"
    batch = b"BHS|^~\\&|LAB|NORTH\r" + adt("HTTP-2", "m-901", "Batched") + b"BTS|1\r"
    answer = httpx.post(url, content=batch, headers=headers).content
    assert answer.startswith(b"BHS|") and field(answer, "MSA", 2) == "HTTP-2"
    assert patients(http, "m-901")[0]["name"][0]["family"] == "Batched"


async def test_connection_limit_and_idle_timeout(port: int) -> None:
    opened = []
    try:
        for n in range(MAX_CONNECTIONS):
            reader, writer = await open_hl7_connection("127.0.0.1", port)
            opened.append((reader, writer))
            writer.writeblock(adt(f"LIMIT-{n}", f"m-95{n}"))
            await writer.drain()
            ack = bytes(await asyncio.wait_for(reader.readblock(), 15))
            assert field(ack, "MSA", 1) == "AA"
        reader, writer = await open_hl7_connection("127.0.0.1", port)
        writer.writeblock(adt("LIMIT-X", "m-95x"))  # one too many: AR, then closed
        await writer.drain()
        refused = bytes(await asyncio.wait_for(reader.readblock(), 15))
        assert field(refused, "MSA", 1) == "AR" and field(refused, "MSA", 2) == "LIMIT-X"
        assert b"Too many connections" in refused
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        for _, writer in opened:
            writer.close()
    await asyncio.sleep(0.3)  # the listener sees the closes
    async with mllp(port) as (reader, writer):  # room again; then silence closes it
        writer.writeblock(adt("IDLE-1", "m-960"))
        await writer.drain()
        assert field(bytes(await asyncio.wait_for(reader.readblock(), 15)), "MSA", 1) == "AA"
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), IDLE_SECONDS + 10) == b""
        assert asyncio.get_running_loop().time() - started >= IDLE_SECONDS - 0.5
