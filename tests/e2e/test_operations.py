"""What operators rely on, over real HTTP against `fhir-server serve`: health checks,
Prometheus metrics, request ids in responses, OperationOutcomes and logs, JSON log lines,
and no PHI in the log at the default level."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess

NAME = "Zebulonwick"  # a family name found nowhere else, to scan the log for
MRN = "MRN-778899-UNIQUE"
PHONE = "555-0199-4242"


def _patient() -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "name": [{"family": NAME, "given": ["Quillon"]}],
        "identifier": [{"system": "urn:oid:1.2.3.4", "value": MRN}],
        "telecom": [{"system": "phone", "value": PHONE}],
        "birthDate": "1970-03-04",
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("ops") / "fhir.db"
    process = ServerProcess(db, FHIR_METRICS="loopback").start(timeout=120)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("ops-json") / "fhir.db"
    process = ServerProcess(
        db,
        FHIR_LOG_FORMAT="json",
        FHIR_LOG_LEVEL="debug",
        FHIR_METRICS="token",
        FHIR_METRICS_TOKEN="s3cret-metrics",
    ).start(timeout=120)
    yield process
    process.stop()


def _root(server: ServerProcess) -> str:
    return server.base.removesuffix("/fhir")


def test_health_live_and_ready_answer_outside_fhir(server: ServerProcess) -> None:
    live = httpx.get(_root(server) + "/health/live")
    ready = httpx.get(_root(server) + "/health/ready")
    assert live.status_code == 200 and ready.status_code == 200
    assert ready.json()["issue"][0]["diagnostics"] == "ready"


def test_health_needs_no_token_when_authorization_is_on(tmp_path: Path) -> None:
    process = ServerProcess(tmp_path / "fhir.db", FHIR_AUTH="on").start(timeout=120)
    try:
        assert httpx.get(_root(process) + "/health/ready").status_code == 200
        assert httpx.get(process.base + "/Patient").status_code == 401
    finally:
        process.stop()


def test_metrics_count_requests_by_interaction_type_and_status(server: ServerProcess) -> None:
    created = httpx.post(server.base + "/Patient", json=_patient())
    assert created.status_code == 201
    pid = created.json()["id"]
    for _ in range(3):
        assert httpx.get(f"{server.base}/Patient/{pid}").status_code == 200
    assert httpx.get(f"{server.base}/Patient/does-not-exist").status_code == 404
    text = httpx.get(_root(server) + "/metrics").text
    reads = _sample(text, "fhir_http_requests_total", interaction="read", status="200")
    assert reads >= 3
    assert _sample(text, "fhir_http_requests_total", interaction="read", status="404") >= 1
    assert _sample(text, "fhir_http_requests_total", interaction="create", status="201") >= 1
    assert _sample(text, "fhir_http_request_duration_seconds_count", interaction="read") >= 4
    assert _sample(text, "fhir_storage_commit_group_size_count") >= 1
    assert _sample(text, "fhir_database_bytes") > 0
    assert _sample(text, "fhir_http_connections") >= 1  # this scrape's own connection
    assert 'resource_type="Patient"' in text
    assert pid not in text  # ids never become label values


def test_unknown_types_do_not_become_labels(server: ServerProcess) -> None:
    assert httpx.get(server.base + "/NoSuchType123").status_code == 404
    text = httpx.get(_root(server) + "/metrics").text
    assert "NoSuchType123" not in text
    assert _sample(text, "fhir_http_requests_total", interaction="unknown", status="404") >= 1


def test_metrics_token_mode(json_server: ServerProcess) -> None:
    url = _root(json_server) + "/metrics"
    assert httpx.get(url).status_code == 401
    wrong = {"Authorization": "Bearer s3cret-metricz"}
    assert httpx.get(url, headers=wrong).status_code == 401
    ok = httpx.get(url, headers={"Authorization": "Bearer s3cret-metrics"})
    assert ok.status_code == 200 and "fhir_http_requests_total" in ok.text


def test_request_id_is_echoed_or_made_up_and_names_the_outcome(server: ServerProcess) -> None:
    given = httpx.get(server.base + "/Patient/nope", headers={"X-Request-ID": "abc-123.x"})
    assert given.headers["x-request-id"] == "abc-123.x"
    assert "abc-123.x" in given.json()["issue"][0]["diagnostics"]
    made = httpx.get(server.base + "/metadata")
    assert len(made.headers["x-request-id"]) == 32
    hostile = httpx.get(server.base + "/metadata", headers={"X-Request-ID": "a b\tc<script>"})
    assert hostile.headers["x-request-id"] != "a b\tc<script>"
    other = httpx.get(server.base + "/metadata")
    assert other.headers["x-request-id"] != made.headers["x-request-id"]


def test_request_id_in_middleware_refusals(server: ServerProcess) -> None:
    response = httpx.post(
        server.base + "/Patient",
        content=b"x",
        headers={"Content-Type": "text/plain", "X-Request-ID": "refused-1"},
    )
    assert response.status_code == 415
    assert response.headers["x-request-id"] == "refused-1"
    assert "refused-1" in response.json()["issue"][0]["diagnostics"]


def test_request_id_appears_in_the_log_line_of_that_request(json_server: ServerProcess) -> None:
    # at debug level every refused request is logged (method, path, status): its line
    # must carry the request's id
    response = httpx.get(json_server.base + "/Patient/nope", headers={"X-Request-ID": "trace-42"})
    assert response.status_code == 404
    lines = _json_lines(json_server)
    assert all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    mine = [line for line in lines if line["request_id"] == "trace-42"]
    assert mine and any("404" in str(line["message"]) for line in mine)


def test_json_log_lines_parse(json_server: ServerProcess) -> None:
    raw = json_server.log.read_text(errors="replace").splitlines()
    assert raw
    for line in raw:
        json.loads(line)  # every line is one JSON object


def test_no_query_strings_in_the_log_with_worker_processes(tmp_path: Path) -> None:
    """Each worker configures logging after uvicorn did: it must not turn the access log
    (whose lines carry query strings, i.e. search values) back on."""
    process = ServerProcess(tmp_path / "fhir.db", FHIR_WORKERS="2").start(timeout=120)
    try:
        for _ in range(4):
            response = httpx.get(process.base + "/Patient", params={"identifier": MRN})
            assert response.status_code == 200
    finally:
        process.stop()
    log = process.log.read_text(errors="replace")
    assert MRN not in log and "GET /fhir/Patient" not in log


def test_no_phi_in_the_log_at_the_default_level(server: ServerProcess) -> None:
    assert httpx.post(server.base + "/Patient", json=_patient()).status_code == 201
    bad = _patient() | {"birthDate": "1970-13-45"}
    assert httpx.post(server.base + "/Patient", json=bad).status_code == 400
    assert httpx.get(server.base + "/Patient", params={"name": NAME}).status_code == 200
    assert httpx.get(server.base + "/Patient", params={"identifier": MRN}).status_code == 200
    assert httpx.get(server.base + "/Patient", params={"birthdate": "bad-date"}).status_code == 400
    log = server.log.read_text(errors="replace")
    for secret in (NAME, "Quillon", MRN, PHONE, "1970-03-04"):
        assert secret not in log, f"{secret!r} is in the server log"


def _json_lines(server: ServerProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]


def _sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of metric `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += float(value)
    return total
