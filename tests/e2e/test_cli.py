"""`fhir-server load` and `fhir-server export` as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from tests.e2e.helpers import observation, patient


def fhir_server(*args: str, database: Path) -> subprocess.CompletedProcess[str]:
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
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": patient("tx1"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": observation("urn:uuid:11111111-1111-4111-8111-111111111111"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    (folder / "tx.json").write_bytes(orjson.dumps(bundle))
    collection = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": observation("Patient/p1", value=80)},
        ],
    }
    (folder / "collection.json").write_bytes(orjson.dumps(collection))

    loaded = fhir_server("load", str(folder), database=database)
    assert loaded.returncode == 1, loaded.stdout + loaded.stderr  # two bad lines
    assert "loaded 1203 resources, 2 failed" in loaded.stdout
    assert "Patient.ndjson:8" in loaded.stderr and "Patient.ndjson:9" in loaded.stderr

    out = tmp_path / "out"
    exported = fhir_server(
        "export", "--type", "Patient", "--type", "Observation", "--out", str(out), database=database
    )
    assert exported.returncode == 0, exported.stderr
    patients = (out / "Patient.ndjson").read_bytes().splitlines()
    observations = (out / "Observation.ndjson").read_bytes().splitlines()
    assert len(patients) == 1201 and len(observations) == 2
    assert {orjson.loads(p)["id"] for p in patients} >= {"p0", "p1199"}


def test_terminology_imports_store_code_systems(tmp_path: Path) -> None:
    """import-loinc and import-snomed read the release formats and store a CodeSystem that
    the operations answer from once a server starts on the same database."""
    from tests.support.server import ServerProcess

    vectors = Path(__file__).parents[1] / "vectors" / "terminology"
    database = tmp_path / "terms.db"
    loinc = fhir_server(
        "terminology", "import-loinc", str(vectors / "loinc" / "Loinc.csv"), database=database
    )
    assert loinc.returncode == 1, loinc.stderr  # the fixture's malformed rows are reported
    assert "skipped" in loinc.stderr and "CodeSystem/loinc" in loinc.stdout
    snomed = fhir_server("terminology", "import-snomed", str(vectors / "snomed"), database=database)
    assert "CodeSystem/snomed-ct" in snomed.stdout, snomed.stderr
    missing = fhir_server(
        "terminology", "import-loinc", str(tmp_path / "none.csv"), database=database
    )
    assert missing.returncode == 2 and "cannot import" in missing.stderr

    server = ServerProcess(database).start()
    try:
        import httpx

        with httpx.Client(base_url=server.base, timeout=30) as client:
            lookup = client.get(
                "/CodeSystem/$lookup", params={"system": "http://loinc.org", "code": "8480-6"}
            )
            assert lookup.status_code == 200, lookup.text
            display = next(
                p["valueString"] for p in lookup.json()["parameter"] if p["name"] == "display"
            )
            assert "Systolic blood pressure" in display
            subsumes = client.get(
                "/CodeSystem/$subsumes",
                params={
                    "system": "http://snomed.info/sct",
                    "codeA": "73211009",
                    "codeB": "46635009",
                },
            )
            assert subsumes.status_code == 200, subsumes.text
            outcome = next(
                p["valueCode"] for p in subsumes.json()["parameter"] if p["name"] == "outcome"
            )
            assert outcome == "subsumes"  # diabetes mellitus subsumes type 1 diabetes
    finally:
        server.stop()


def test_reindex_brings_old_resources_under_a_new_parameter_and_resumes(tmp_path: Path) -> None:
    """A SearchParameter loaded after the data: `reindex` makes the data searchable by it,
    resuming from the checkpoint file an interrupted run left."""
    from tests.support.server import ServerProcess

    database = tmp_path / "reindex.db"
    eye = "http://example.org/fhir/StructureDefinition/eye-colour"
    colours = ["blue", "brown", "blue", "green", "blue"]
    lines = [
        orjson.dumps(
            {"resourceType": "Patient", "id": f"p{n}", "extension": [{"url": eye, "valueCode": c}]}
        )
        for n, c in enumerate(colours)
    ]
    (tmp_path / "Patient.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    param = {
        "resourceType": "SearchParameter",
        "id": "eye-colour",
        "status": "active",
        "url": "http://example.org/fhir/SearchParameter/eye-colour",
        "name": "EyeColour",
        "description": "Eye colour",
        "code": "eye-colour",
        "base": ["Patient"],
        "type": "token",
        "expression": f"Patient.extension.where(url = '{eye}').value",
    }
    (tmp_path / "SearchParameter.ndjson").write_bytes(orjson.dumps(param) + b"\n")
    assert fhir_server("load", str(tmp_path / "Patient.ndjson"), database=database).returncode == 0
    assert (
        fhir_server("load", str(tmp_path / "SearchParameter.ndjson"), database=database).returncode
        == 0
    )

    checkpoint = tmp_path / "progress.json"  # as a run stopped after p0..p2 would leave it
    checkpoint.write_bytes(
        orjson.dumps({"done": [], "type": "Patient", "last_id": "p2", "counts": {"Patient": 3}})
    )
    resumed = fhir_server(
        "reindex", "--type", "Patient", "--checkpoint", str(checkpoint), database=database
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "Patient: 5" in resumed.stdout
    assert not checkpoint.exists()

    server = ServerProcess(database).start()
    try:
        import httpx

        with httpx.Client(base_url=server.base, timeout=30) as client:
            found = client.get(
                "/Patient", params={"eye-colour": "blue"}, headers={"Prefer": "handling=strict"}
            )
            assert found.status_code == 200, found.text
            # p0 was done by the "earlier" run, not this one: only p4 was re-indexed here
            assert {e["resource"]["id"] for e in found.json().get("entry", [])} == {"p4"}
    finally:
        server.stop()

    full = fhir_server("reindex", "--checkpoint", str(checkpoint), database=database)
    assert full.returncode == 0, full.stderr
    assert "Patient: 5" in full.stdout and "resuming" not in full.stderr
    unknown = fhir_server("reindex", "--type", "Nonsense", database=database)
    assert unknown.returncode == 2 and "Nonsense" in unknown.stderr
