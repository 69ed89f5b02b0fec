"""The leader lease over real processes: `kill -9` of the leader during HL7 v2 ingest over
MLLP and a background re-index. Another worker takes over within 5 seconds (it listens for
MLLP), every acknowledged message is stored, and the re-index resumes from its checkpoint
(it does not start over) and completes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.test_hl7_mllp import IDENTIFIER_SYSTEM, adt, exchange, field
from tests.support.server import ServerProcess, free_port
from tests.support.workers import require_proc, wait_for_listener, wait_for_workers

EYE = "http://example.org/fhir/StructureDefinition/eye-colour"
PATIENTS = 2000
MESSAGES = 40
KILL_AT = 5  # the message before which the leader is killed
TAKEOVER = 5.0  # seconds, the promise


def job(database: Path) -> dict[str, Any] | None:
    """The background re-index job as the server saved it (read from the file)."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as conn:
        row = conn.execute("SELECT value FROM saved_state WHERE key = 'job:reindex'").fetchone()
    return orjson.loads(row[0]) if row else None


def reindexed(database: Path) -> int:
    found = job(database)
    return sum(found["checkpoint"]["counts"].values()) if found else 0


def eye_patients(count: int) -> bytes:
    entries = [
        {
            "resource": {
                "resourceType": "Patient",
                "extension": [{"url": EYE, "valueCode": "blue"}],
            },
            "request": {"method": "POST", "url": "Patient"},
        }
        for _ in range(count)
    ]
    return orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries})


SEARCH_PARAMETER = {
    "resourceType": "SearchParameter",
    "id": "eye-colour",
    "url": "http://example.org/fhir/SearchParameter/eye-colour",
    "name": "EyeColour",
    "status": "active",
    "description": "Eye colour from the extension",
    "code": "eye-colour",
    "base": ["Patient"],
    "type": "token",
    "expression": f"Patient.extension.where(url = '{EYE}').value",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    require_proc()
    process = ServerProcess(
        tmp_path / "fhir.db", FHIR_WORKERS="2", FHIR_MLLP_PORT=str(free_port())
    ).start(timeout=180)
    try:
        yield process
    finally:
        process.stop()


async def send_until_acked(port: int, control: str, mrn: str, deadline: float) -> bytes:
    """Send one message until it is acknowledged (reconnecting, as a sender does)."""
    while True:
        try:
            [ack] = await exchange(port, adt(control, mrn, f"Fam{control}"))
            return ack
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_kill_9_of_the_leader_during_hl7_ingest_and_a_reindex(server: ServerProcess) -> None:
    assert server.process is not None
    port = int(server.env["FHIR_MLLP_PORT"])
    pids = wait_for_workers(server.process.pid, 2)
    leader = wait_for_listener(pids, port, timeout=30)
    with httpx.Client(base_url=server.base, timeout=120) as http:
        failover(server, port, pids, leader, http)


def failover(
    server: ServerProcess, port: int, pids: list[int], leader: int, http: httpx.Client
) -> None:
    """Load patients, queue the re-index, kill the leader mid-way through the HL7 feed."""
    assert server.process is not None
    for _ in range(PATIENTS // 500):
        assert http.post("", content=eye_patients(500), headers=_json()).status_code == 200
    assert http.put("/SearchParameter/eye-colour", json=SEARCH_PARAMETER).status_code == 201
    time.sleep(1.0)  # in effect in both workers
    queued = http.post(
        "/$reindex",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "type", "valueString": "Patient"},
                {"name": "background", "valueBoolean": True},
            ],
        },
    )
    assert queued.status_code == 200, queued.text

    acked: dict[str, str] = {}  # control id -> mrn
    killed_at: list[float] = []
    first_ack_after: list[float] = []
    before_kill: list[int] = []  # resources re-indexed (as saved) just before the kill

    async def ingest() -> None:
        deadline = time.monotonic() + 180
        for n in range(MESSAGES):
            control, mrn = f"FO-{n}", f"fo-{n}"
            if n == KILL_AT:
                while reindexed(server.database) == 0:  # the re-index is under way
                    assert time.monotonic() < deadline, "the re-index never started"
                    await asyncio.sleep(0.005)
                before_kill.append(reindexed(server.database))
                os.kill(leader, signal.SIGKILL)
                under_way = job(server.database)
                assert under_way is not None and not under_way["done"], under_way
                killed_at.append(time.monotonic())
            ack = await send_until_acked(port, control, mrn, deadline)
            if killed_at and not first_ack_after:
                first_ack_after.append(time.monotonic() - killed_at[0])
            if field(ack, "MSA", 1) == "AA":
                acked[control] = mrn

    asyncio.run(ingest())
    takeover = first_ack_after[0]  # the first message after the kill went to the new leader
    assert takeover < TAKEOVER, f"MLLP answered again only {takeover:.1f} s after the kill"
    survivors = [pid for pid in pids if pid != leader]
    assert len(acked) == MESSAGES, f"only {len(acked)} of {MESSAGES} acknowledged"
    # a live worker listens: the survivor, or (when a busy machine made it step down while
    # the supervisor restarted the dead one) the new worker, each within a lease's takeover
    live = wait_for_workers(server.process.pid, 2)  # the survivor and the dead one's successor
    assert leader not in live and set(survivors) < set(live)
    assert wait_for_listener(live, port, timeout=TAKEOVER) != leader

    for control, mrn in acked.items():  # nothing acknowledged is lost
        found = http.get("/Patient", params={"identifier": f"{IDENTIFIER_SYSTEM}|{mrn}"}).json()
        assert found["total"] == 1, control

    deadline = time.monotonic() + 180
    while not (job(server.database) or {}).get("done"):
        assert time.monotonic() < deadline, f"the re-index did not finish: {job(server.database)}"
        time.sleep(0.2)
    status = http.get("/$reindex-status").json()
    assert status["parameter"][0] == {"name": "status", "valueCode": "done"}
    final = job(server.database)
    assert final is not None
    total = reindexed(server.database)
    # resumed, not started over: the second run began from the checkpoint saved before the
    # kill, and what was done before it was not done again
    runs = final["runs"]  # resources done when each leader began (more than two: the new
    first_run, second_run = runs[:2]  # leader stepped down and up again on a busy machine)
    assert first_run == 0 and second_run >= before_kill[0] > 0, (runs, before_kill)
    assert runs == sorted(runs)  # every later run resumed too
    assert PATIENTS <= total < PATIENTS + before_kill[0], (total, before_kill)
    blue = http.get(
        "/Patient",
        params={"eye-colour": "blue", "_summary": "count"},
        headers={"Prefer": "handling=strict"},
    )
    assert blue.json()["total"] == PATIENTS
    replaced = wait_for_workers(server.process.pid, 2)  # the supervisor restarted the dead one
    assert leader not in replaced and set(survivors) < set(replaced)
    print(f"MLLP answered again {takeover:.2f} s after the kill")  # noqa: T201 - with -s


def _json() -> dict[str, str]:
    return {"Content-Type": "application/fhir+json"}


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the supervising process: its workers stop on their own (they would keep
    the port and the leader lease with nothing left to restart or stop them)."""
    require_proc()
    server = ServerProcess(tmp_path / "fhir.db", FHIR_WORKERS="2").start()
    try:
        assert server.process is not None
        pids = wait_for_workers(server.process.pid, 2)
        server.process.send_signal(signal.SIGKILL)  # the supervisor alone
        server.process.wait(10)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in pids):
            assert time.monotonic() < deadline, "orphaned workers kept running"
            time.sleep(0.1)
    finally:
        server.kill()
