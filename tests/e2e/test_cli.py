"""`fhir-server load` and `fhir-server export` as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from tests.e2e.helpers import observation, patient


def fhir_server(*args: str, database: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "fhir-server"), *args]
    env = {**os.environ, "FHIR_DATABASE": str(database)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_load_ndjson_and_bundles_then_export(tmp_path: Path) -> None:
    database = tmp_path / "load.db"
    folder = tmp_path / "input"
    folder.mkdir()
    lines = [orjson.dumps(patient(f"m{n}", id=f"p{n}")) for n in range(1200)]
    lines.insert(7, b'{"resourceType": "Patient", "gender": 3}')  # invalid: reported, not fatal
    lines.insert(8, b"{not json")
    (folder / "Patient.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
         "resource": patient("tx1"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": observation("urn:uuid:11111111-1111-4111-8111-111111111111"),
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    (folder / "tx.json").write_bytes(orjson.dumps(bundle))
    collection = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": observation("Patient/p1", value=80)},
    ]}
    (folder / "collection.json").write_bytes(orjson.dumps(collection))

    loaded = fhir_server("load", str(folder), database=database)
    assert loaded.returncode == 1, loaded.stdout + loaded.stderr  # two bad lines
    assert "loaded 1203 resources, 2 failed" in loaded.stdout
    assert "Patient.ndjson:8" in loaded.stderr and "Patient.ndjson:9" in loaded.stderr

    out = tmp_path / "out"
    exported = fhir_server("export", "--type", "Patient", "--type", "Observation",
                           "--out", str(out), database=database)
    assert exported.returncode == 0, exported.stderr
    patients = (out / "Patient.ndjson").read_bytes().splitlines()
    observations = (out / "Observation.ndjson").read_bytes().splitlines()
    assert len(patients) == 1201 and len(observations) == 2
    assert {orjson.loads(p)["id"] for p in patients} >= {"p0", "p1199"}
