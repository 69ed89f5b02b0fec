"""Encryption at rest through real HTTP on a real SQLite file: a known patient's name, MRN
and phone are nowhere in the database file, its WAL, a copy made with VACUUM INTO, or the
blob store (and the same scan finds them with encryption off); a wrong or missing master
key refuses the start; `keys rotate` under a running write load loses nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fhir_server.storage.encryption import MasterKeys
from tests.e2e.test_startup_refusals import _refused, _serve
from tests.support.server import ServerProcess

NAME, MRN, PHONE = "Qwertavian", "MRN-880417", "555-0199-73"
SECRETS = (NAME, MRN, PHONE)
FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def _fhir_server(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "fhir-server"), *args]
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def _key_file(tmp_path: Path) -> Path:
    path = tmp_path / "master-keys.json"
    result = _fhir_server("keys", "generate", str(path), env={})
    assert result.returncode == 0, result.stderr
    return path


def _patient(family: str, mrn: str, phone: str) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": mrn}],
        "name": [{"family": family, "given": ["Ann"]}],
        "telecom": [{"system": "phone", "value": phone}],
        "birthDate": "1970-05-06",
    }


def _write_known_patient(base: str) -> str:
    created = httpx.post(f"{base}/Patient", json=_patient(NAME, MRN, PHONE), headers=FHIR)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    for code in ("8867-4", "8480-6"):
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{pid}"},
            "note": [{"text": f"{NAME} ({MRN}) called from {PHONE}"}],
        }
        assert httpx.post(f"{base}/Observation", json=observation, headers=FHIR).status_code == 201
    scan = f"scan of {NAME} {MRN} {PHONE}".encode()
    raw = httpx.post(f"{base}/Binary", content=scan, headers={"Content-Type": "model/stl"})
    assert raw.status_code == 201, raw.text
    assert httpx.get(raw.headers["location"], headers={"Accept": "model/stl"}).content == scan
    return pid


def _found(files: list[Path]) -> list[str]:
    data = b"".join(f.read_bytes() for f in files if f.is_file())
    return [s for s in SECRETS if s.encode() in data]


@dataclass(frozen=True)
class Sealed:
    server: ServerProcess
    database: Path
    keys: Path


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sealed]:
    """One server with encryption at rest on, for the whole module."""
    folder = tmp_path_factory.mktemp("sealed")
    keys = _key_file(folder)
    database = folder / "fhir.db"
    server = ServerProcess(database, FHIR_WORKERS="1", FHIR_ENCRYPTION_KEY_FILE=str(keys))
    server.start()
    yield Sealed(server, database, keys)
    server.stop()


def _scan(base: str, database: Path, copy: Path) -> tuple[list[str], list[str], list[str]]:
    """What a copy of the files reveals: (database + WAL, a VACUUM INTO copy, the blobs)."""
    pid = _write_known_patient(base)
    found = httpx.get(f"{base}/Patient", params={"identifier": MRN, "name": NAME[:4]})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [pid]
    assert httpx.get(f"{base}/Patient/{pid}").json()["name"][0]["family"] == NAME
    wal = Path(f"{database}-wal")
    assert wal.exists()
    with sqlite3.connect(database) as conn:
        conn.execute("VACUUM INTO ?", (str(copy),))
    blobs = list(Path(f"{database}.blobs").iterdir())
    return _found([database, wal]), _found([copy]), _found(blobs)


def test_no_plaintext_in_the_database_the_wal_a_copy_or_the_blobs(
    sealed: Sealed, tmp_path: Path
) -> None:
    assert _scan(sealed.server.base, sealed.database, tmp_path / "copy.db") == ([], [], [])


def test_the_same_scan_finds_everything_with_encryption_off(tmp_path: Path) -> None:
    database = tmp_path / "fhir.db"
    server = ServerProcess(database, FHIR_WORKERS="1").start()
    try:
        found = _scan(server.base, database, tmp_path / "copy.db")
    finally:
        server.stop()
    assert found == (list(SECRETS), list(SECRETS), list(SECRETS))


def test_a_wrong_or_missing_master_key_refuses_to_start(sealed: Sealed, tmp_path: Path) -> None:
    _write_known_patient(sealed.server.base)
    wrong = tmp_path / "other-keys.json"
    MasterKeys("", {}, wrong).with_new_key().save(wrong)
    _refused(_serve(sealed.database, env={"FHIR_ENCRYPTION_KEY_FILE": str(wrong)}), "master key")
    _refused(_serve(sealed.database), "encrypted at rest")


def test_rotation_under_a_write_load_loses_nothing(sealed: Sealed) -> None:
    env = {"FHIR_DATABASE": str(sealed.database), "FHIR_ENCRYPTION_KEY_FILE": str(sealed.keys)}
    written: list[tuple[str, int, str]] = []  # (id, version, family) acknowledged
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        with httpx.Client(base_url=sealed.server.base, headers=FHIR, timeout=30) as http:
            n = 0
            while not stop.is_set():
                n += 1
                family = f"Rotafam{n:04d}"
                made = http.post("/Patient", json=_patient(family, f"R-{n}", f"555-{n}"))
                if made.status_code != 201:
                    errors.append(made.text)
                    continue
                pid = made.json()["id"]
                written.append((pid, 1, family))
                updated = http.put(f"/Patient/{pid}", json={**made.json(), "gender": "other"})
                if updated.status_code != 200:
                    errors.append(updated.text)
                    continue
                written.append((pid, 2, family))

    thread = threading.Thread(target=writer)
    try:
        thread.start()
        while len(written) < 10 and thread.is_alive():
            time.sleep(0.05)
        rotated = _fhir_server("keys", "rotate", env=env)
        assert rotated.returncode == 0, rotated.stderr
        before = len(written)
        while len(written) < before + 10 and thread.is_alive():
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(30)
    assert errors == []
    assert len(json.loads(sealed.keys.read_text())["keys"]) == 2  # the old key stays
    _check_all_readable(sealed.server.base, written)


def _check_all_readable(base: str, written: list[tuple[str, int, str]]) -> None:
    with httpx.Client(base_url=base, headers=FHIR, timeout=30) as http:
        for pid, version, family in written:
            read = http.get(f"/Patient/{pid}/_history/{version}")
            assert read.status_code == 200, read.text
            assert read.json()["name"][0]["family"] == family
        pid, _, family = written[-1]
        found = http.get("/Patient", params={"family": family, "_count": "5"}).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [pid]
