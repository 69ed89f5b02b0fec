"""Authorization over real HTTP: uvicorn serving the app with authorization on, tokens
minted by a test key ring. 401 and `WWW-Authenticate` for missing or bad tokens, 403 with
an OperationOutcome for a scope that does not cover the request, a sample of the scope
matrix, and what `FHIR_AUTH=off` does to `serve`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from fhir_server.api.app import create_app
from fhir_server.auth.bearer import BearerVerifier
from fhir_server.settings import Settings
from tests.support.server import ServerProcess, free_port
from tests.support.smart import TestKeyRing, TestRevocations

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


class Served:
    """The app under uvicorn in a thread of the test process (so the test owns its keys)."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.ring, self.revocations = TestKeyRing(), TestRevocations()
        settings = Settings(database=str(tmp / "fhir.db"), base_url=self.base, auth="on")
        app = create_app(settings, verifier=BearerVerifier(self.ring, self.revocations))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def token(self, scope: str, **claims: Any) -> str:
        return self.ring.token(
            scope, audience=self.base, issuer=f"http://127.0.0.1:{self.port}/auth", **claims
        )

    def client(self, scope: str | None = None, **claims: Any) -> httpx.Client:
        headers = {"Accept": "application/fhir+json"}
        if scope is not None:
            headers["Authorization"] = f"Bearer {self.token(scope, **claims)}"
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("smart")).start()
    with server.client("system/*.*") as admin:
        for patient in ("p1", "p2"):
            admin.put(f"/Patient/{patient}", json={"resourceType": "Patient", "id": patient})
            for category in ("laboratory", "vital-signs"):
                id = f"{patient}-{category}"
                response = admin.put(
                    f"/Observation/{id}",
                    json={
                        "resourceType": "Observation",
                        "id": id,
                        "status": "final",
                        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
                        "code": {"text": category},
                        "subject": {"reference": f"Patient/{patient}"},
                    },
                )
                assert response.status_code in (200, 201), response.text
    yield server
    server.stop()


def test_metadata_needs_no_token(served: Served) -> None:
    with served.client() as http:
        assert http.get("/metadata").status_code == 200


@pytest.mark.parametrize("path", ["/Patient/p1", "/Observation", ""])
def test_no_token_is_401_with_a_bearer_challenge(served: Served, path: str) -> None:
    with served.client() as http:
        response = http.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="fhir"'
    assert response.json()["resourceType"] == "OperationOutcome"


def test_a_write_without_token_is_refused_before_its_body_is_read(served: Served) -> None:
    with served.client() as http:
        response = http.post(
            "/Patient", content=b"{not json", headers={"Content-Type": "application/fhir+json"}
        )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "case", ["garbage", "expired", "other audience", "other issuer", "unknown key"]
)
def test_bad_tokens_are_401_invalid_token(served: Served, case: str) -> None:
    tokens = {
        "garbage": lambda: "abc.def.ghi",
        "expired": lambda: served.token("user/*.read", lifetime=-600),
        "other audience": lambda: served.ring.token(
            "user/*.read", audience="http://x/fhir", issuer=f"http://127.0.0.1:{served.port}/auth"
        ),
        "other issuer": lambda: served.ring.token("user/*.read", audience=served.base),
        "unknown key": lambda: TestKeyRing().token(
            "user/*.read", audience=served.base, issuer=f"http://127.0.0.1:{served.port}/auth"
        ),
    }
    response = httpx.get(
        f"{served.base}/Patient/p1", headers={"Authorization": f"Bearer {tokens[case]()}"}
    )
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge


def test_a_revoked_token_is_401(served: Served) -> None:
    token = served.token("system/*.read", jti="revoked")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{served.base}/Patient/p1", headers=headers).status_code == 200
    served.revocations.revoke("revoked")
    deadline = time.monotonic() + 10  # the server reads revocations at most once a second
    while (
        response := httpx.get(f"{served.base}/Patient/p1", headers=headers)
    ).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_scope_that_does_not_cover_the_request_is_403(served: Served) -> None:
    with served.client("patient/Observation.rs", patient="p1") as http:
        response = http.get("/Condition")
        assert response.status_code == 403
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "forbidden"
        assert "www-authenticate" not in response.headers
        assert (
            http.post(
                "/Observation",
                json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
            ).status_code
            == 403
        )


def test_patient_scopes_over_http(served: Served) -> None:
    with served.client("launch/patient patient/*.read", patient="p1") as http:
        assert http.get("/Observation/p1-laboratory").status_code == 200
        assert http.get("/Observation/p2-laboratory").status_code == 403
        assert http.get("/Patient/p2").status_code == 403
        found = http.get("/Observation").json()
        assert sorted(e["resource"]["id"] for e in found["entry"]) == [
            "p1-laboratory",
            "p1-vital-signs",
        ]
        everything = http.get("/Patient/p2/$everything")
        assert everything.status_code == 403
        included = http.get(
            "/Observation", params={"_include": "Observation:subject", "subject:Patient._id": "p2"}
        ).json()
        assert included.get("entry", []) == []


def test_granular_scope_over_http(served: Served) -> None:
    scope = f"patient/Observation.rs?category={CATEGORY}|laboratory"
    with served.client(scope, patient="p1") as http:
        found = http.get("/Observation").json()
        assert [e["resource"]["id"] for e in found["entry"]] == ["p1-laboratory"]
        assert http.get("/Observation/p1-vital-signs").status_code == 403


def test_system_scopes_see_everyone(served: Served) -> None:
    with served.client("system/Observation.rs") as http:
        found = http.get("/Observation", params={"_count": "100"}).json()
        assert found["total"] == 4
        assert http.get("/Patient/p2").status_code == 403  # no Patient scope


def test_the_hl7_endpoint_needs_every_system_right(served: Served) -> None:
    url = f"http://127.0.0.1:{served.port}/hl7v2"
    er7 = {"Content-Type": "x-application/hl7-v2+er7"}
    assert httpx.post(url, content=b"MSH|", headers=er7).status_code == 401
    for scope, status in (("system/*.rs", 403), ("system/*.cruds", 404)):  # 404: HL7 v2 is off
        headers = {**er7, "Authorization": f"Bearer {served.token(scope)}"}
        assert httpx.post(url, content=b"MSH|", headers=headers).status_code == status


def test_serve_refuses_auth_off_beyond_loopback(tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).parent / "fhir-server"),
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
    ]
    env = {"FHIR_AUTH": "off", "FHIR_DATABASE": str(tmp_path / "fhir.db"), "PATH": "/usr/bin"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "authorization off" in done.stderr


def test_auth_off_warns_at_start(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "fhir.db").start()  # FHIR_AUTH=off, on 127.0.0.1
    try:
        assert httpx.get(f"{server.base}/Patient").status_code == 200  # no token needed
    finally:
        server.stop()
    assert "authorization is OFF" in server.log.read_text()
