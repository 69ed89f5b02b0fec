"""The CDS Hooks figures of `make bench`: patient-view latency (p95) over real HTTP.

The server (bench/cds_app.py under uvicorn, as `fhir-server serve` runs it) offers a
patient-view service with a Patient read and an Observation search as prefetch; a CDS
client registered with `fhir-server cds client add --jwks-file` signs a fresh ES384 JWT
per call (signed before the clock starts), so every call pays the JWT check and the jti
store write. Two figures, one request at a time:
- full prefetch: the client sends both prefetch results (as the CDS Hooks sandbox does);
- prefetch fetched from our own server: the client sends none, `fhirServer` is this
  server, the server gets both through its FHIR service.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from joserfc import jws
from joserfc.jwk import ECKey

from bench import server
from bench.report import ms, table
from bench.terminology import COLUMNS, Latency, Row, sample

FULL_TARGET_MS = 50.0
FETCHED_TARGET_MS = 100.0
SAMPLES = 300
ISS = "https://bench-ehr.example.org"
PATIENT = "bench-patient"


def measure(scratch: Path) -> list[Row]:
    key = ECKey.generate_key("P-384", parameters={"kid": "bench"})
    database = scratch / "cds.db"
    jwks = scratch / "cds-jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    env = {**os.environ, "FHIR_DATABASE": str(database), "FHIR_AUTH": "off"}
    command = [str(server.BIN_DIR / "fhir-server"), "cds", "client", "add", "--iss", ISS]
    subprocess.run([*command, "--jwks-file", str(jwks)], env=env, check=True, timeout=120)
    with _cds_server(env, scratch) as running, httpx.Client(timeout=30) as http:
        _load(http, running.fhir_base)
        url = f"{running.base_url}/cds-services/bench-hba1c"
        prefetch = {
            "patient": http.get(f"{running.fhir_base}/Patient/{PATIENT}").json(),
            "hba1c": http.get(
                f"{running.fhir_base}/Observation",
                params={"patient": PATIENT, "code": "http://loinc.org|4548-4"},
            ).json(),
        }
        full = _latency(http, key, url, {"prefetch": prefetch})
        fetched = _latency(http, key, url, {"fhirServer": running.fhir_base})
    return [
        _row("patient-view, full prefetch", full, FULL_TARGET_MS),
        _row("patient-view, prefetch fetched from our own server", fetched, FETCHED_TARGET_MS),
    ]


@contextmanager
def _cds_server(env: dict[str, str], scratch: Path) -> Iterator[server.RunningServer]:
    port = server.free_port()
    command = [
        str(server.BIN_DIR / "python"),
        "-m",
        "uvicorn",
        "bench.cds_app:app",
        "--host",
        server.HOST,
        "--port",
        str(port),
        *server.UVICORN_OPTIONS,
    ]
    env = {**env, "FHIR_HOST": server.HOST, "FHIR_PORT": str(port)}
    with server.running(command, env, port, scratch / "cds.log") as running:
        yield running


def _load(http: httpx.Client, base: str) -> None:
    headers = {"Content-Type": "application/fhir+json"}
    patient = {"resourceType": "Patient", "id": PATIENT, "gender": "female"}
    http.put(f"{base}/Patient/{PATIENT}", json=patient, headers=headers).raise_for_status()
    for i in range(20):
        observation = {
            "resourceType": "Observation",
            "id": f"bench-a1c-{i}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
            "subject": {"reference": f"Patient/{PATIENT}"},
            "effectiveDateTime": f"2026-{1 + i % 12:02d}-01",
            "valueQuantity": {"value": 5.5 + i / 10, "unit": "%"},
        }
        url = f"{base}/Observation/{observation['id']}"
        http.put(url, json=observation, headers=headers).raise_for_status()


def _latency(http: httpx.Client, key: ECKey, url: str, extra: dict[str, object]) -> Latency:
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/bench", "patientId": PATIENT},
        **extra,
    }
    content = json.dumps(body).encode()
    tokens = iter([_token(key, url) for _ in range(SAMPLES + 20)])

    def call() -> httpx.Response:
        headers = {"Authorization": f"Bearer {next(tokens)}", "Content-Type": "application/json"}
        return http.post(url, content=content, headers=headers)

    return sample(call, SAMPLES)


def _token(key: ECKey, url: str) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": url, "exp": now + 300, "iat": now, "jti": uuid.uuid4().hex}
    header = {"alg": "ES384", "typ": "JWT", "kid": key.kid}
    return jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=["ES384"])


def _row(label: str, latency: Latency, target: float) -> Row:
    met = latency.p95 <= target
    return Row(label, ms(latency.p50), ms(latency.p95), f"p95 ≤ {target:g} ms", met, latency.p95)


def render(rows: list[Row]) -> str:
    return table(("CDS Hooks", *COLUMNS[1:]), [row.cells() for row in rows])
