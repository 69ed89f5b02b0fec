"""Bulk Data export over real HTTP: a SMART-protected server process, its job runner on the
leader, the `fhir-server bulk export` client and `fhir-server load` for the round trip.

One server (authorization on) for the module, loaded with a small population through
`fhir-server load`; files split at 4 KB so every type has several. The kill -9 test
restarts the server on the same port and database, so it comes last but one; the round
trip (export, load into a fresh database, export again, compare) comes last.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from fhir_server.cli.bulk import BulkClient, Credentials
from fhir_server.cli.load import export_types
from fhir_server.settings import Settings
from tests.support.server import ServerProcess

PATIENTS = 60
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def cli(database: Path, *args: str, env: dict[str, str] | None = None) -> str:
    command = [str(Path(sys.executable).parent / "fhir-server"), *args]
    done = subprocess.run(
        command,
        env={**os.environ, "FHIR_DATABASE": str(database), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def population() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n in range(PATIENTS):
        gender = "female" if n % 3 == 0 else "male"
        out.append(
            {
                "resourceType": "Patient",
                "id": f"p{n}",
                "gender": gender,
                "name": [{"family": "Smith" if n % 10 == 1 else "Jones"}],
            }
        )
        for k in range(2):
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"o{n}-{k}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": f"Patient/p{n}"},
                    "valueQuantity": {"value": 60 + n + k, "unit": "/min"},
                }
            )
    for n in (4, 5):
        out.append(
            {
                "resourceType": "Condition",
                "id": f"c{n}",
                "subject": {"reference": f"Patient/p{n}"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
            }
        )
    out.append(
        {
            "resourceType": "Group",
            "id": "g-members",
            "type": "person",
            "actual": True,
            "member": [
                {"entity": {"reference": "Patient/p2"}},
                {"entity": {"reference": "Patient/p3"}},
                {"entity": {"reference": "Patient/p7"}, "inactive": True},
            ],
        }
    )
    out.append(
        {
            "resourceType": "Group",
            "id": "g-diabetes",
            "type": "person",
            "actual": False,
            "characteristic": [
                {
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "404684003"}]},
                    "valueCodeableConcept": {
                        "coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]
                    },
                    "exclude": False,
                }
            ],
        }
    )
    return out


async def prepare(database: Path, seed: Path, jwks: dict[str, Any], base: str) -> dict[str, str]:
    """Load the population and register two backend clients in-process (one start-up of
    the service instead of a command each); mint the tokens the tests use."""
    from fhir_server.assembly import open_auth, open_service
    from fhir_server.auth.clients import new_client
    from fhir_server.cli.auth import mint_token
    from fhir_server.cli.load import load_files
    from fhir_server.settings import Settings

    settings = Settings(database=str(database), auth="on")
    async with open_service(settings) as service, open_auth(settings, service) as auth:
        assert (await load_files(service, [seed])).failed == 0
        ids = {}
        for name, scopes in (("owner", "system/*.rs"), ("other", "system/*.rs")):
            doc, _ = new_client(
                name=name,
                kind="asymmetric",
                redirect_uris=[],
                scopes=scopes.split(),
                jwks_url=None,
                jwks=jwks,
                jku=None,
            )
            auth.store.add_client(doc)
            ids[name] = doc["id"]
        return {
            "client_id": ids["owner"],
            "admin": mint_token(auth, "system/*.*", None, base),
            "other": mint_token(auth, "system/*.rs", ids["other"], base),
            "patients": mint_token(auth, "system/Patient.rs", ids["other"], base),
        }


@pytest.fixture(scope="module")
def bulk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("bulk")
    database = folder / "fhir.db"
    seed = folder / "seed.ndjson"
    seed.write_text("".join(json.dumps(r) + "\n" for r in population()))
    key = RSAKey.generate_key(2048, parameters={"kid": "bulk-1"}, private=True)
    (folder / "client.key.json").write_text(json.dumps(key.as_dict(private=True)))
    server = ServerProcess(database, FHIR_AUTH="on", FHIR_EXPORT_FILE_BYTES="4096")
    jwks = {"keys": [key.as_dict(private=False)]}
    tokens = asyncio.run(prepare(database, seed, jwks, server.base))
    server.start()
    yield {
        "server": server,
        "database": database,
        "folder": folder,
        "tokens": tokens,
        "client_id": tokens["client_id"],
    }
    server.stop()


def http(bulk: dict[str, Any], who: str = "admin") -> httpx.Client:
    headers = {"Authorization": f"Bearer {bulk['tokens'][who]}"} if who else {}
    return httpx.Client(base_url=bulk["server"].base, timeout=60, headers=headers)


def export(
    client: httpx.Client, path: str = "$export", **params: str | list[str]
) -> dict[str, Any]:
    """Kick off, poll until done (at most 60 s), return the manifest."""
    kick = client.get(path, params=params, headers=ASYNC)
    assert kick.status_code == 202, kick.text
    status = kick.headers["content-location"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = client.get(status)
        if reply.status_code == 200:
            return {**reply.json(), "status": status}
        assert reply.status_code == 202, reply.text
        assert "x-progress" in reply.headers and int(reply.headers["retry-after"]) > 0
        time.sleep(0.2)
    raise AssertionError("the export did not finish")


def resources(
    client: httpx.Client, manifest: dict[str, Any], kind: str = "output"
) -> list[dict[str, Any]]:
    out = []
    for entry in manifest[kind]:
        reply = client.get(entry["url"], headers={"Accept": "application/fhir+ndjson"})
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [json.loads(line) for line in reply.text.splitlines()]
        assert len(lines) == entry["count"]
        out.extend(lines)
    return out


def ids(found: list[dict[str, Any]], type: str) -> set[str]:
    return {r["id"] for r in found if r["resourceType"] == type}


def test_a_system_export_has_every_resource_split_into_files(bulk) -> None:
    with http(bulk) as client:
        manifest = export(client, _type="Patient,Observation,Condition,Group")
        assert manifest["requiresAccessToken"] is True and manifest["error"] == []
        assert manifest["request"].endswith(
            "$export?_type=Patient%2CObservation%2CCondition%2CGroup"
        )
        found = resources(client, manifest)
        for type, count in (
            ("Patient", PATIENTS),
            ("Observation", 2 * PATIENTS),
            ("Condition", 2),
            ("Group", 2),
        ):
            total = client.get(type, params={"_summary": "count"}).json()["total"]
            assert len(ids(found, type)) == total == count
            assert len([r for r in found if r["resourceType"] == type]) == count
        assert len([e for e in manifest["output"] if e["type"] == "Observation"]) > 2


def test_writes_after_the_kickoff_are_absent_and_in_the_next_since_export(bulk) -> None:
    with http(bulk) as client:
        kick = client.get("$export", params={"_type": "Patient"}, headers=ASYNC)
        assert kick.status_code == 202
        changed = client.put(
            "Patient/p0", json={"resourceType": "Patient", "id": "p0", "gender": "other"}
        )
        assert changed.status_code == 200
        assert client.delete("Patient/p1").status_code in (200, 204)
        created = client.put(
            "Patient/late", json={"resourceType": "Patient", "id": "late", "gender": "other"}
        )
        assert created.status_code == 201
        status = kick.headers["content-location"]
        for _ in range(300):
            reply = client.get(status)
            if reply.status_code == 200:
                break
            time.sleep(0.2)
        manifest = reply.json()
        found = {r["id"]: r for r in resources(client, manifest)}
        assert set(found) == {f"p{n}" for n in range(PATIENTS)}  # p1 still there, no "late"
        assert found["p0"]["gender"] == "female"  # as it was at transactionTime
        following = export(client, _type="Patient", _since=manifest["transactionTime"])
        assert {r["id"]: r["gender"] for r in resources(client, following)} == {
            "p0": "other",
            "late": "other",
        }
        deleted = resources(client, following, "deleted")
        assert [b["entry"][0]["request"] for b in deleted] == [
            {"method": "DELETE", "url": "Patient/p1"}
        ]
        assert (
            client.put(
                "Patient/p1",
                json={
                    "resourceType": "Patient",
                    "id": "p1",
                    "gender": "male",
                    "name": [{"family": "Smith"}],
                },
            ).status_code
            == 201
        )


def test_type_filters_are_ored_and_return_exactly_the_matches(bulk) -> None:
    with http(bulk) as client:
        manifest = export(
            client, _type="Patient", _typeFilter=["Patient?gender=female", "Patient?family=Smith"]
        )
        expected = {f"p{n}" for n in range(PATIENTS) if n % 3 == 0 or n % 10 == 1} - {"p0"}
        assert ids(resources(client, manifest), "Patient") == expected
        elements = export(
            client,
            _type="Observation",
            _elements="status",
            _typeFilter="Observation?subject=Patient/p9",
        )
        found = resources(client, elements)
        assert ids(found, "Observation") == {"o9-0", "o9-1"}
        assert all("valueQuantity" not in r and r["status"] == "final" for r in found)


def test_group_exports_follow_members_and_characteristics(bulk) -> None:
    with http(bulk) as client:
        members = resources(
            client, export(client, "Group/g-members/$export", _type="Patient,Observation")
        )
        assert ids(members, "Patient") == {"p2", "p3"}  # p7 is inactive
        assert ids(members, "Observation") == {"o2-0", "o2-1", "o3-0", "o3-1"}
        posted = client.post(
            "Group/g-members/$export",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "_type", "valueString": "Patient"},
                    {"name": "patient", "valueReference": {"reference": "Patient/p3"}},
                ],
            },
            headers={**ASYNC, "Content-Type": "application/fhir+json"},
        )
        assert posted.status_code == 202, posted.text
        status = posted.headers["content-location"]
        while (reply := client.get(status)).status_code == 202:
            time.sleep(0.2)
        assert ids(resources(client, reply.json()), "Patient") == {"p3"}
        cohort = resources(client, export(client, "Group/g-diabetes/$export"))
        assert ids(cohort, "Patient") == {"p4", "p5"}
        assert ids(cohort, "Condition") == {"c4", "c5"}
        assert ids(cohort, "Observation") == {"o4-0", "o4-1", "o5-0", "o5-1"}
        assert "Group" not in {r["resourceType"] for r in cohort}


TYPES = ("Patient", "Observation")


def test_a_deidentified_export_has_no_names_or_ids_and_stays_joinable(bulk) -> None:
    with http(bulk) as client:
        manifest = export(client, _type="Patient,Observation", _deidentify="safe-harbor")
        found = resources(client, manifest)
        again = resources(client, export(client, _type="Patient", _deidentify="safe-harbor"))
        counts = {t: client.get(t, params={"_summary": "count"}).json()["total"] for t in TYPES}
    patients = [r for r in found if r["resourceType"] == "Patient"]
    observations = [r for r in found if r["resourceType"] == "Observation"]
    assert (len(patients), len(observations)) == (counts["Patient"], counts["Observation"])
    text = json.dumps(found)
    assert "Smith" not in text and "Jones" not in text  # names removed
    original = {f"p{n}" for n in range(PATIENTS)}
    assert len(patients) >= PATIENTS and not original & {
        p["id"] for p in patients
    }  # ids replaced by pseudonyms
    pseudonyms = {p["id"] for p in patients}
    assert {o["subject"]["reference"].removeprefix("Patient/") for o in observations} <= (
        pseudonyms
    )  # references rewritten the same way: still joinable
    assert not pseudonyms & {p["id"] for p in again}  # another export, other pseudonyms


def test_bad_kickoffs_are_refused_with_an_operation_outcome(bulk) -> None:
    with http(bulk) as client:
        cases = [
            ({}, {"Accept": "application/fhir+json"}, 400, "respond-async"),
            ({"_outputFormat": "text/csv"}, ASYNC, 400, "_outputFormat"),
            ({"_type": "Nonsense"}, ASYNC, 400, "Nonsense"),
            ({"_typeFilter": "Patient?unknown-param=1"}, ASYNC, 400, "unknown-param"),
            ({"_since": "yesterday"}, ASYNC, 400, "_since"),
            (
                {"includeAssociatedData": "LatestProvenanceResources"},
                ASYNC,
                400,
                "includeAssociatedData",
            ),
            ({"_deidentify": "nope"}, ASYNC, 400, "nope"),
        ]
        for params, headers, status, text in cases:
            reply = client.get("$export", params=params, headers=headers)
            assert reply.status_code == status, (params, reply.text)
            assert reply.json()["resourceType"] == "OperationOutcome" and text in reply.text
        lenient = client.get(
            "$export",
            params={"_type": "Patient", "includeAssociatedData": "x"},
            headers={**ASYNC, "Prefer": "respond-async, handling=lenient"},
        )
        assert lenient.status_code == 202
        assert client.get("Group/nope/$export", headers=ASYNC).status_code == 404


def test_only_the_client_that_started_an_export_reads_it_and_delete_removes_it(bulk) -> None:
    with (
        http(bulk) as client,
        http(bulk, "other") as other,
        http(bulk, "patients") as narrow,
        httpx.Client(base_url=bulk["server"].base, timeout=30) as anonymous,
    ):
        assert anonymous.get("$export", headers=ASYNC).status_code == 401
        refused = narrow.get("$export", params={"_type": "Observation"}, headers=ASYNC)
        assert refused.status_code == 403 and "Observation" in refused.text
        allowed = narrow.get("$export", params={"_type": "Patient"}, headers=ASYNC)
        assert allowed.status_code == 202  # least privilege: its own type only
        manifest = export(client, _type="Patient")
        url = manifest["output"][0]["url"]
        assert anonymous.get(url).status_code == 401
        assert other.get(manifest["status"]).status_code == 403
        assert other.get(url).status_code == 403
        gone = client.delete(manifest["status"])
        assert gone.status_code == 202
        assert client.get(manifest["status"]).status_code == 404
        assert client.get(url).status_code == 404
        assert client.get("$export-poll-status", params={"_jobId": "0" * 32}).status_code == 404


def test_a_killed_server_resumes_the_export_after_a_restart(bulk) -> None:
    server: ServerProcess = bulk["server"]
    with http(bulk) as client:
        kick = client.get("$export", params={"_type": "Patient,Observation"}, headers=ASYNC)
        assert kick.status_code == 202
        status = kick.headers["content-location"]
        assert client.get(status).status_code == 202
    server.kill()  # SIGKILL: no shutdown, the job left queued or running
    server.start()  # same port and database: the status URL and tokens still hold
    with http(bulk) as client:
        deadline = time.monotonic() + 60
        while (reply := client.get(status)).status_code == 202:
            assert time.monotonic() < deadline, "the status stayed 202"
            time.sleep(0.2)
        assert reply.status_code == 200, reply.text
        found = resources(client, reply.json())
        assert (
            len(ids(found, "Patient")) == PATIENTS + 1
            and len(ids(found, "Observation")) == 2 * PATIENTS
        )


def test_round_trip_bulk_export_then_load_into_a_fresh_database(bulk) -> None:
    """The two commands: `bulk export` (as a Backend Services client) and `load`."""
    folder: Path = bulk["folder"]
    base = bulk["server"].base
    out = folder / "exported"
    cli(
        bulk["database"],
        "bulk",
        "export",
        "--from",
        base,
        "--to",
        str(out),
        "--client-id",
        bulk["client_id"],
        "--key",
        str(folder / "client.key.json"),
        "--type",
        "Patient,Observation,Condition,Group",
    )
    files = sorted(p.name for p in out.glob("*.ndjson"))
    assert "Patient.1.ndjson" in files and "Observation.2.ndjson" in files
    said: list[str] = []
    credentials = Credentials(bulk["client_id"], folder / "client.key.json", None, "system/*.rs")
    with BulkClient(base, out, credentials, say=said.append) as client:
        client.run()  # the same export, continued
    assert sum("complete, skipped" in line for line in said) == len(files)
    fresh = folder / "fresh.db"
    cli(fresh, "load", str(out))
    back = folder / "back"
    asyncio.run(
        export_types(
            Settings(database=str(fresh)), ["Patient", "Observation", "Condition", "Group"], back
        )
    )
    exported, loaded = _without_meta(out), _without_meta(back)
    with http(bulk) as client:
        total = sum(
            client.get(t, params={"_summary": "count"}).json()["total"]
            for t in ("Patient", "Observation", "Condition", "Group")
        )
    assert len(exported) == total >= 3 * PATIENTS + 4
    assert [key for key in exported if exported[key] != loaded.get(key)] == []
    assert set(loaded) == set(exported)


def _without_meta(folder: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in folder.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            resource.pop("meta", None)
            out[f"{resource['resourceType']}/{resource['id']}"] = resource
    return out
