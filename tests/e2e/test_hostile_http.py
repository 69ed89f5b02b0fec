"""Hostile HTTP against a real server: slow clients, connection floods, forged Host headers,
cross-site writes, CORS, catastrophic regexes, and a large transaction beside reads.

Servers with short limits are started here (so the slow-client cases end in about a
second); socket timeouts only bound a hang, they assert no speed.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.helpers import JSON, patient, unique
from tests.support.server import ServerProcess

HANG = 20.0  # seconds after which a socket that got no answer counts as hung


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Short deadlines: 1 s for a request head, 1 s (+1 s per KiB) for a body."""
    database = tmp_path_factory.mktemp("strict") / "fhir.db"
    process = ServerProcess(
        database, FHIR_HEADER_TIMEOUT="1", FHIR_BODY_TIMEOUT="1", FHIR_BODY_MIN_RATE="1024"
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """At most 8 open connections; idle keep-alive connections stay for 60 s. The cap is
    per worker process (the kernel spreads connections over the workers), so one worker."""
    database = tmp_path_factory.mktemp("capped") / "fhir.db"
    process = ServerProcess(
        database, FHIR_MAX_CONNECTIONS="8", FHIR_KEEP_ALIVE_TIMEOUT="60", FHIR_WORKERS="1"
    ).start()
    yield process
    process.stop()


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=HANG)
    return sock


def _head(server: ServerProcess, method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (b"" if it just closes)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {HANG} s")
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# -- slow clients and floods -----------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed(strict: ServerProcess) -> None:
    with _connect(strict) as sock:
        assert _answer(sock) == b""


def test_a_slow_request_head_is_closed_with_408(strict: ServerProcess) -> None:
    socks = [_connect(strict) for _ in range(20)]
    try:
        for sock in socks:  # the head never ends: no blank line
            sock.sendall(
                f"GET /fhir/metadata HTTP/1.1\r\nHost: 127.0.0.1:{strict.port}\r\n".encode()
            )
        for sock in socks:
            answer = _answer(sock)
            assert answer == b"" or _status(answer) == 408
    finally:
        for sock in socks:
            sock.close()


def test_a_trickled_request_head_is_closed(strict: ServerProcess) -> None:
    with _connect(strict) as sock:
        sock.sendall(b"GET /fhir/metadata HTTP/1.1\r\n")
        stop = threading.Event()

        def trickle() -> None:  # one header byte at a time, until the server hangs up
            while not stop.wait(0.2):
                try:
                    sock.sendall(b"X")
                except OSError:
                    return

        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        try:
            answer = _answer(sock)
        finally:
            stop.set()
            feeder.join()
        assert answer == b"" or _status(answer) == 408


def test_a_slow_body_gets_408_and_the_connection_closes(strict: ServerProcess) -> None:
    with _connect(strict) as sock:
        sock.sendall(
            _head(strict, "POST", "/fhir/Patient", f"Content-Type: {JSON}", "Content-Length: 5000")
            + b'{"resourceType":'
        )
        answer = _answer(sock)
    assert _status(answer) == 408
    outcome = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert outcome["issue"][0]["code"] == "timeout"


def test_a_body_at_a_fair_rate_still_arrives(strict: ServerProcess) -> None:
    body = orjson.dumps(patient(unique()))
    with httpx.Client(base_url=strict.base, timeout=HANG) as http:
        created = http.post("/Patient", content=body, headers={"Content-Type": JSON})
    assert created.status_code == 201


def test_beyond_the_connection_cap_a_request_gets_503(capped: ServerProcess) -> None:
    holders = [_connect(capped) for _ in range(8)]
    try:
        for sock in holders:  # each answered once, then idle on keep-alive
            sock.sendall(_head(capped, "GET", "/fhir/metadata?_summary=true"))
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        with _connect(capped) as extra:
            extra.sendall(_head(capped, "GET", "/fhir/metadata"))
            answer = _answer(extra)
        assert _status(answer) == 503
        head, body = answer.split(b"\r\n\r\n", 1)
        assert b"retry-after: 1" in head.lower()
        assert orjson.loads(body)["resourceType"] == "OperationOutcome"
    finally:
        for sock in holders:
            sock.close()


def test_requests_succeed_while_300_idle_sockets_are_open(server: ServerProcess) -> None:
    idle = [_connect(server) for _ in range(300)]
    try:
        with httpx.Client(base_url=server.base, timeout=HANG) as http:
            statuses = [
                http.get("/metadata", params={"_summary": "true"}).status_code for _ in range(20)
            ]
        assert statuses == [200] * 20
    finally:
        for sock in idle:
            sock.close()


# -- Host header and banner ------------------------------------------------------------------


def test_a_foreign_host_header_is_refused(client: httpx.Client) -> None:
    response = client.post(
        "/Patient",
        content=orjson.dumps(patient(unique())),
        headers={"Content-Type": JSON, "Host": "evil.example"},
    )
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert "evil.example" in issue["diagnostics"] and issue["expression"] == ["Host"]


def test_links_follow_an_allowed_host(client: httpx.Client, server: ServerProcess) -> None:
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}"):
        created = client.post(
            "/Patient",
            content=orjson.dumps(patient(unique())),
            headers={"Content-Type": JSON, "Host": host},
        )
        assert created.status_code == 201
        assert created.headers["location"].startswith(f"http://{host}/fhir/Patient/")


def test_no_server_banner(client: httpx.Client) -> None:
    response = client.get("/metadata", params={"_summary": "true"})
    assert response.status_code == 200 and "server" not in response.headers


# -- cross-site writes and CORS ----------------------------------------------------------------

HL7_MESSAGE = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||123\r"


@pytest.mark.parametrize(
    ("method", "path", "content_type", "body"),
    [
        ("POST", "/hl7v2", "text/plain", HL7_MESSAGE),
        ("POST", "/fhir/$reindex", "application/x-www-form-urlencoded", b"type=Patient"),
        ("POST", "/fhir/Patient", "application/x-www-form-urlencoded", b"name=x"),
        ("POST", "/fhir/Patient", "text/plain", orjson.dumps(patient("x"))),
        ("POST", "/fhir", "multipart/form-data; boundary=x", b"--x--"),
        ("POST", "/fhir/$reindex", None, b""),
        ("PUT", "/fhir/Patient/abc", "text/plain", orjson.dumps(patient("x", id="abc"))),
        ("PATCH", "/fhir/Patient/abc", "application/x-www-form-urlencoded", b"a=b"),
    ],
)
def test_writes_without_a_documented_media_type_get_415(
    server: ServerProcess, method: str, path: str, content_type: str | None, body: bytes
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    url = f"http://127.0.0.1:{server.port}{path}"
    response = httpx.request(method, url, content=body, headers=headers, timeout=HANG)
    assert response.status_code == 415
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Content-Type"]


def test_form_posts_still_search(client: httpx.Client) -> None:
    mrn = unique()
    client.post("/Patient", content=orjson.dumps(patient(mrn)), headers={"Content-Type": JSON})
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    found = client.post("/Patient/_search", content=f"identifier={mrn}", headers=form)
    assert found.status_code == 200 and found.json()["total"] == 1
    system = client.post("/_search", content=f"_type=Patient&identifier={mrn}", headers=form)
    assert system.status_code == 200


def test_a_cors_preflight_from_a_smart_app_is_allowed(client: httpx.Client) -> None:
    response = client.options(
        "/Patient",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, prefer, if-match",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "prefer", "if-match"} <= {
        h.strip() for h in allowed.split(",")
    }
    assert "access-control-allow-credentials" not in response.headers


def test_cross_origin_responses_expose_fhir_headers(client: httpx.Client) -> None:
    created = client.post(
        "/Patient",
        content=orjson.dumps(patient(unique())),
        headers={"Content-Type": JSON, "Origin": "https://app.example"},
    )
    assert created.status_code == 201
    assert created.headers["access-control-allow-origin"] == "*"
    exposed = {
        h.strip().lower() for h in created.headers["access-control-expose-headers"].split(",")
    }
    assert {"location", "etag", "last-modified", "content-location"} <= exposed


def test_plain_options_lists_the_methods(client: httpx.Client) -> None:
    response = client.options("/Patient")
    assert response.status_code == 200
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "OPTIONS",
    }
    metadata = client.options("/metadata")
    assert metadata.status_code == 200 and "POST" not in metadata.headers["allow"]
    unknown = client.options("/NoSuchType")
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"


# -- catastrophic regular expressions -----------------------------------------------------


def test_a_catastrophic_expand_regex_is_answered(client: httpx.Client) -> None:
    url = f"http://example.org/cs/{unique()}"
    code_system = {
        "resourceType": "CodeSystem",
        "url": url,
        "status": "active",
        "content": "complete",
        "concept": [{"code": "a" * 40}, {"code": "b!"}],
    }
    assert (
        client.post(
            "/CodeSystem", content=orjson.dumps(code_system), headers={"Content-Type": JSON}
        ).status_code
        == 201
    )

    def expand(pattern: str) -> httpx.Response:
        value_set = {
            "resourceType": "ValueSet",
            "status": "active",
            "compose": {
                "include": [
                    {
                        "system": url,
                        "filter": [{"property": "code", "op": "regex", "value": pattern}],
                    }
                ]
            },
        }
        return client.post(
            "/ValueSet/$expand", content=orjson.dumps(value_set), headers={"Content-Type": JSON}
        )

    expanded = expand(r"(\w+)+!")
    assert expanded.status_code == 200
    assert [c["code"] for c in expanded.json()["expansion"]["contains"]] == ["b!"]
    refused = expand(r"(a)\1")
    assert refused.status_code == 400 and "RE2" in refused.json()["issue"][0]["diagnostics"]


# -- a large transaction does not stop other clients -----------------------------------------


def _transaction(entries: int) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{unique()}{i:020d}",
                    "resource": patient(unique()),
                    "request": {"method": "POST", "url": "Patient"},
                }
                for i in range(entries)
            ],
        }
    )


def test_reads_are_served_while_a_large_transaction_runs(tmp_path: Path) -> None:
    process = ServerProcess(tmp_path / "fhir.db").start()
    try:
        _reads_during_transaction(process)
    finally:
        process.stop()


def _reads_during_transaction(process: ServerProcess) -> None:
    body = _transaction(5000)
    with httpx.Client(base_url=process.base, timeout=600) as http:
        pid = http.post(
            "/Patient", content=orjson.dumps(patient(unique())), headers={"Content-Type": JSON}
        ).json()["id"]
    done = threading.Event()
    outcome: list[int] = []

    def run() -> None:
        with httpx.Client(base_url=process.base, timeout=600) as http:
            outcome.append(http.post("", content=body, headers={"Content-Type": JSON}).status_code)
        done.set()

    writer = threading.Thread(target=run)
    with httpx.Client(base_url=process.base, timeout=600) as http:
        http.get(f"/Patient/{pid}")  # connected and warm before the transaction starts
        writer.start()
        reads = 0
        while not done.is_set():
            assert http.get(f"/Patient/{pid}").status_code == 200
            reads += 1 if not done.is_set() else 0
    writer.join()
    assert outcome == [200]
    # A transaction that held the event loop would let reads through only while its body
    # was uploading and parsing (about 30 here); between its entries, reads go on (about 2,000).
    assert reads >= 200
