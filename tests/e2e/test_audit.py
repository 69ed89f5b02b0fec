"""The audit trail over real HTTP and MLLP against `fhir-server serve` with SMART on.

Each kind of exchange (token issued and refused, refused 401/403, failed 404, create,
update, read, search, delete, an operation, an HL7 v2 message) leaves the AuditEvent
expected for it; only an audit role reads them; nobody writes them through the API;
`Patient/$access-log`; `fhir-server audit verify` passes on the untouched file and names
the batch of each event changed, removed or inserted in the SQLite file directly; and a
SIGTERM writes what was still queued.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from typer.testing import CliRunner, Result

from fhir_server.assembly import open_auth
from fhir_server.cli import app as cli_app
from fhir_server.cli.auth import mint_token
from fhir_server.settings import Settings
from tests.e2e.test_hl7_mllp import adt, exchange
from tests.support.server import ServerProcess, free_port

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def fhir_server(database: Path, *args: str) -> Result:
    """`fhir-server ARGS` run in this process (the typer app itself: no interpreter start)."""
    return CliRunner().invoke(cli_app, list(args), env={"FHIR_DATABASE": str(database)})


def tokens(database: Path, base: str, *scopes: str) -> list[str]:
    async def mint() -> list[str]:
        async with open_auth(Settings(database=str(database))) as auth:
            return [await asyncio.to_thread(mint_token, auth, s, None, base) for s in scopes]

    return asyncio.run(mint())


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("audit")
    database = folder / "fhir.db"
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    jwks = folder / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    added = fhir_server(
        database, "auth", "client", "add", "--name", "backend", "--jwks", str(jwks),
        "--scopes", "system/Patient.rs",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    client = added.stdout.split("client_id: ")[1].split()[0]
    server = ServerProcess(
        database,
        FHIR_AUTH="on",
        FHIR_WORKERS="1",
        FHIR_MLLP_PORT=str(free_port()),
        FHIR_AUDIT_FLUSH_SECONDS="0.2",
        FHIR_AUDIT_INDEX_SECONDS="0.2",
    ).start()
    admin, auditor, reader = tokens(
        database,
        server.base,
        "system/*.cruds",
        "system/AuditEvent.rs system/Patient.rs",
        "system/Patient.rs",
    )
    try:
        yield {
            "server": server,
            "database": database,
            "client": client,
            "key": key,
            "admin": {"Authorization": f"Bearer {admin}"},
            "auditor": {"Authorization": f"Bearer {auditor}"},
            "reader": {"Authorization": f"Bearer {reader}"},
        }
    finally:
        server.stop()


def assertion(client: str, token_url: str, key: RSAKey) -> str:
    now = int(time.time())
    claims = {"iss": client, "sub": client, "aud": token_url, "exp": now + 240, "iat": now}
    claims["jti"] = uuid.uuid4().hex
    return jwt.encode({"alg": "RS384", "kid": key.kid, "typ": "JWT"}, claims, key, ["RS384"])


def summary(event: dict[str, Any]) -> tuple[str, str, str, str, tuple[str, ...]]:
    """(type, subtype, action, outcome, the entities' references with their role)."""
    subtype = (event.get("subtype") or [{"code": "-"}])[0]["code"]
    refs = tuple(
        f"{e['role']['code']}:{e['what']['reference']}"
        for e in event.get("entity", [])
        if "reference" in e.get("what", {})
    )
    return event["type"]["code"], subtype, event["action"], event["outcome"], refs


def test_each_interaction_leaves_its_audit_event(audited: dict[str, Any]) -> None:
    server: ServerProcess = audited["server"]
    admin, auditor, reader = audited["admin"], audited["auditor"], audited["reader"]
    token_url = server.base.removesuffix("/fhir") + "/auth/token"
    form = {"grant_type": "client_credentials", "scope": "system/Patient.rs"}
    form["client_assertion_type"] = ASSERTION_TYPE
    with httpx.Client(base_url=server.base, timeout=60) as http:
        refused = http.post(token_url, data={**form, "client_assertion": "x.y.z"})
        assert refused.status_code in (400, 401)
        good = assertion(audited["client"], token_url, audited["key"])
        assert http.post(token_url, data={**form, "client_assertion": good}).status_code == 200
        assert http.get("Patient/p1").status_code == 401
        body = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Audit"}]}
        assert http.put("Patient/p1", json=body, headers=admin).status_code == 201
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "pulse"},
            "subject": {"reference": "Patient/p1"},
        }
        created = http.post("Observation", json=obs, headers=admin)
        assert created.status_code == 201
        obs_id = created.json()["id"]
        assert http.get("Patient/p1", headers=admin).status_code == 200
        found = http.get("Observation", params={"subject": "Patient/p1"}, headers=admin)
        assert found.json()["total"] == 1
        assert http.get("Patient/p1/$everything", headers=admin).status_code == 200
        assert http.delete(f"Observation/{obs_id}", headers=admin).status_code in (200, 204)
        assert http.post("Patient", json=body, headers=reader).status_code == 403
        assert http.get("Patient/none", headers=admin).status_code == 404
        ack = asyncio.run(exchange(int(server.env["FHIR_MLLP_PORT"]), adt("AUD1", "MRN-AUD")))
        assert b"MSA|AA|AUD1" in ack[0]
        expected = [
            ("110114", "ITI-71", "E", "4", ()),
            ("110114", "ITI-71", "E", "0", ()),
            ("rest", "read", "R", "4", ("1:Patient/p1",)),
            ("rest", "update", "U", "0", ("1:Patient/p1",)),
            ("rest", "create", "C", "0", (f"4:Observation/{obs_id}", "1:Patient/p1")),
            ("rest", "read", "R", "0", ("1:Patient/p1",)),
            ("rest", "search-type", "E", "0", (f"4:Observation/{obs_id}", "1:Patient/p1")),
            ("rest", "operation", "E", "0", (f"4:Observation/{obs_id}", "1:Patient/p1")),
            ("rest", "delete", "D", "0", (f"4:Observation/{obs_id}", "1:Patient/p1")),
            ("rest", "create", "C", "4", ()),
            ("rest", "read", "R", "4", ("1:Patient/none",)),
        ]
        events = wait_for_events(http, auditor, len(expected) + 1)
        assert [summary(e) for e in events[: len(expected)]] == expected
        hl7 = events[len(expected)]
        assert summary(hl7)[:4] == ("110107", "A01", "E", "0")
        assert any(r.startswith("1:Patient/") for r in summary(hl7)[4])
        # who: the backend client's token (no user), from this machine
        token_ok, update = events[1], events[3]
        assert token_ok["agent"][-1]["name"] == audited["client"]
        assert update["agent"][0]["network"]["address"] == "127.0.0.1"
        assert update["agent"][-1]["who"]["identifier"]["value"]
        query = next(e for e in events[6]["entity"] if e["role"]["code"] == "24")["query"]
        assert base64.b64decode(query) == b"subject=Patient%2Fp1"
        check_searches_and_access_log(http, auditor, reader, admin, obs_id)


def wait_for_events(http: httpx.Client, auditor: dict[str, str], count: int) -> list[Any]:
    deadline = time.monotonic() + 20
    while True:
        bundle = http.get("AuditEvent", params={"_sort": "date", "_count": "200"}, headers=auditor)
        assert bundle.status_code == 200, bundle.text
        events = [e["resource"] for e in bundle.json().get("entry", [])]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def check_searches_and_access_log(
    http: httpx.Client,
    auditor: dict[str, str],
    reader: dict[str, str],
    admin: dict[str, str],
    obs: str,
) -> None:
    def ids(**params: str) -> int:
        bundle = http.get("AuditEvent", params={**params, "_count": "200"}, headers=auditor)
        assert bundle.status_code == 200, bundle.text
        return len(bundle.json().get("entry", []))

    assert ids(patient="Patient/p1") >= 6
    assert ids(entity=f"Observation/{obs}") == 4
    assert ids(outcome="4") >= 4
    assert ids(date="ge2020-01-01") >= 12
    assert ids(date="lt2020-01-01") == 0
    for who in (reader, admin):  # no audit role: refused, and nothing leaks through _type
        assert http.get("AuditEvent", headers=who).status_code == 403
        assert http.get("Patient/p1/$access-log", headers=who).status_code == 403
    assert (
        http.post("AuditEvent", json={"resourceType": "AuditEvent"}, headers=admin).status_code
        == 403
    )
    assert http.delete("AuditEvent/any", headers=admin).status_code == 403
    assert ids(patient="Patient/p1") > 0  # and yet, without an audit role, none shows:
    for url, params in (
        ("Patient/p1/$everything", {}),
        ("Patient", {"_id": "p1", "_revinclude": "AuditEvent:patient"}),
        ("_history", {"_count": "100"}),
    ):
        found = http.get(url, params=params, headers=admin)
        assert found.status_code == 200, found.text
        types = {e.get("resource", {}).get("resourceType") for e in found.json().get("entry", [])}
        assert "AuditEvent" not in types
        if url == "_history":  # a total would count the AuditEvents this caller cannot see
            assert "total" not in found.json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "AuditEvent", "recorded": "2026-01-01T00:00:00Z"},
                "request": {"method": "POST", "url": "AuditEvent"},
            }
        ],
    }
    assert http.post("", json=bundle, headers=admin).status_code == 403
    log = http.get("Patient/p1/$access-log", headers=auditor)
    assert log.status_code == 200, log.text
    accesses = [
        {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in a["part"]}
        for a in log.json()["parameter"]
    ]
    assert {a["what"] for a in accesses} >= {"read", "update", "create", "search-type"}
    assert all(a["when"] and a["who"] for a in accesses)


def test_verify_passes_untouched_and_names_each_tampering(
    audited: dict[str, Any], tmp_path: Path
) -> None:
    audited["server"].stop()  # SIGTERM: the queue is written, the file is ours
    database: Path = audited["database"]
    done = fhir_server(database, "audit", "verify")
    assert done.exit_code == 0, done.output
    assert "intact" in done.output
    exported = fhir_server(database, "audit", "export", "--since", "2020-01-01")
    lines = [json.loads(line) for line in exported.stdout.splitlines() if line.startswith("{")]
    assert lines and all(e["resourceType"] == "AuditEvent" for e in lines)
    tamperings = {
        "was changed": "UPDATE resources SET data = CAST(replace(CAST(data AS TEXT), "
        '\'"outcome":"0"\', \'"outcome":"4"\') AS BLOB) WHERE id = :id',
        "was removed": "DELETE FROM resources WHERE type = 'AuditEvent' AND id = :id",
        "it was inserted": "INSERT INTO resources (type, id, version, last_updated, deleted, "
        "method, data) SELECT type, 'forged', version, last_updated, deleted, method, data "
        "FROM resources WHERE type = 'AuditEvent' AND id = :id",
    }
    for said, statement in tamperings.items():
        copy = tmp_path / f"{said.split()[-1]}.db"
        for suffix in ("", "-wal", "-shm"):  # the file as it is, its log not yet checkpointed
            if Path(f"{database}{suffix}").exists():
                shutil.copy(f"{database}{suffix}", f"{copy}{suffix}")
        with sqlite3.connect(copy) as db:
            (victim,) = db.execute(
                "SELECT id FROM resources WHERE type = 'AuditEvent' AND "
                'CAST(data AS TEXT) LIKE \'%"outcome":"0"%\' ORDER BY rid LIMIT 1 OFFSET 2'
            ).fetchone()
            assert db.execute(statement, {"id": victim}).rowcount == 1
        found = fhir_server(copy, "audit", "verify")
        assert found.exit_code == 1, found.output
        assert said in found.output and ("batch " in found.output or "forged" in found.output)
        assert victim in found.output or "forged" in found.output


def test_sigterm_writes_what_was_still_queued(tmp_path: Path) -> None:
    database = tmp_path / "fhir.db"
    server = ServerProcess(database, FHIR_WORKERS="1", FHIR_AUDIT_FLUSH_SECONDS="3600").start()
    for _ in range(3):
        assert httpx.get(f"{server.base}/Patient/n0", timeout=30).status_code == 404
    with sqlite3.connect(database) as db:
        before = db.execute("SELECT count(*) FROM resources WHERE type = 'AuditEvent'").fetchone()
    server.stop()
    with sqlite3.connect(database) as db:
        after = db.execute("SELECT data FROM resources WHERE type = 'AuditEvent'").fetchall()
    assert before == (0,) and len(after) == 1  # three reads by one agent: one event
    event = orjson.loads(after[0][0])
    assert event["outcome"] == "4" and event["period"]["start"] <= event["period"]["end"]
    assert [e["what"]["reference"] for e in event["entity"]] == ["Patient/n0"]  # once
