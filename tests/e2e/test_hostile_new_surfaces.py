"""The session's new HTTP surfaces (CDS Hooks, raw Binary, orthosis orders, operations) as a
hostile outsider meets them over real HTTP, against one `fhir-server serve` per module:
every wrong input is a 4xx with a clear OperationOutcome, never a 500."""

from __future__ import annotations

import base64
import copy
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.orthotics import MEASUREMENTS, device_request
from tests.support.server import ServerProcess

LOINC = "http://loinc.org"
HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    database = tmp_path_factory.mktemp("hostile") / "fhir.db"
    process = ServerProcess(
        database,
        FHIR_CDS_AUTH="off",
        FHIR_LOG_LEVEL="debug",
        FHIR_ORTHOTICS_MANUFACTURER="Orthoses Ltd, 1 Main St",
    )
    process.start(timeout=120)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def root(server: ServerProcess) -> str:
    return server.base.removesuffix("/fhir")


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def _observation(system: str, code: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
        "effectiveDateTime": "2026-01-01",
        "component": [],
    }


_PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "birthDate": "1960-01-01",
    "gender": "male",
    "extension": [
        {
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            "extension": [{"url": "ombCategory", "valueCoding": {"code": "2106-3"}}],
        }
    ],
}
_CONDITION = {
    "resourceType": "Condition",
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "49436004"}]},
    "clinicalStatus": {"coding": [{"code": "active"}]},
}
_SCAN = {
    "resourceType": "DocumentReference",
    "status": "current",
    "content": [{"attachment": {"contentType": "model/stl", "url": "Binary/x"}}],
}
_ORDER = {
    "resourceType": "DeviceRequest",
    "id": "d1",
    "intent": "order",
    "codeCodeableConcept": {
        "coding": [
            {"system": "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "L3030"}
        ]
    },
}
_FOOT = "urn:fhir-server:CodeSystem:foot-measurement"
_PREFETCH: dict[str, dict[str, Any]] = {
    "ascvd-10-year-risk": {
        "patient": _PATIENT,
        "observations": _bundle(_observation(LOINC, "2093-3", 200, "mg/dL")),
        "conditions": _bundle(_CONDITION),
        "medications": _bundle(),
    },
    "cha2ds2-vasc": {"patient": _PATIENT, "conditions": _bundle(_CONDITION)},
    "foot-orthosis-order-sign": {
        "scans": _bundle(_SCAN),
        "measurements": _bundle(_observation(_FOOT, "foot-length", 260, "mm")),
        "serviceRequests": _bundle(),
    },
    "diabetes-progression": {
        key: _bundle(_observation(LOINC, code, 5.0, "mg/dL"))
        for key, code in [
            ("bmi", "39156-5"),
            ("bp", "8478-0"),
            ("tc", "2093-3"),
            ("ldl", "2089-1"),
            ("hdl", "2085-9"),
            ("tch", "9830-1"),
            ("ltg", "2571-8"),
            ("glu", "2345-7"),
        ]
    }
    | {"patient": _PATIENT},
}

# (service, path into its prefetch, hostile value): each was a 500 (a TypeError in the
# service) before the rule and model readers took a JSON value of the wrong type as absent
_WRONG_TYPES = [
    ("ascvd-10-year-risk", ("observations", "entry"), 5),
    ("ascvd-10-year-risk", ("observations", "entry", 0, "resource", "code", "coding"), 5),
    ("ascvd-10-year-risk", ("observations", "entry", 0, "resource", "component"), 5),
    ("ascvd-10-year-risk", ("observations", "entry", 0, "resource", "status"), ["final"]),
    ("ascvd-10-year-risk", ("patient", "extension"), True),
    ("ascvd-10-year-risk", ("patient", "extension", 0, "extension"), 1.5),
    ("cha2ds2-vasc", ("conditions", "entry", 0, "resource", "clinicalStatus", "coding"), 5),
    ("foot-orthosis-order-sign", ("scans", "entry", 0, "resource", "content"), 5),
    ("foot-orthosis-order-sign", ("measurements", "entry", 0, "resource", "status"), {"a": 1}),
    ("diabetes-progression", ("tc", "entry", 0, "resource", "status"), ["final"]),
]


def _call(root: str, service: str, prefetch: dict[str, Any], drafts: Any = None) -> httpx.Response:
    hook = "order-sign" if "order-sign" in service else "patient-view"
    context: dict[str, Any] = {"userId": "Practitioner/1", "patientId": "p1"}
    if hook == "order-sign":
        context["draftOrders"] = drafts if drafts is not None else _bundle(_ORDER)
    body = {"hook": hook, "hookInstance": HOOK_INSTANCE, "context": context, "prefetch": prefetch}
    return httpx.post(f"{root}/cds-services/{service}", json=body, timeout=60)


@pytest.mark.parametrize(("service", "path", "value"), _WRONG_TYPES)
def test_cds_prefetch_values_of_the_wrong_type_read_as_missing(
    root: str, service: str, path: tuple[Any, ...], value: Any
) -> None:
    prefetch = copy.deepcopy(_PREFETCH[service])
    target: Any = prefetch
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    answer = _call(root, service, prefetch)
    assert answer.status_code == 200, answer.text
    assert isinstance(answer.json()["cards"], list)


def test_cds_draft_orders_with_entries_of_the_wrong_type(root: str) -> None:
    prefetch = _PREFETCH["foot-orthosis-order-sign"]
    for drafts in (
        {"resourceType": "Bundle", "entry": 5},
        _bundle({**_ORDER, "codeCodeableConcept": {"coding": True}}),
    ):
        answer = _call(root, "foot-orthosis-order-sign", prefetch, drafts)
        assert answer.status_code in (200, 400), answer.text


# --- raw Binary ---

_SCRIPT = b"<html><script>fetch('/auth/clients', {method: 'POST'})</script></html>"


@pytest.mark.parametrize("written_as", ["raw", "json"])
def test_an_uploaded_html_or_svg_file_is_served_sandboxed(
    server: ServerProcess, written_as: str
) -> None:
    """A Binary is served with its own media type from the server's origin: an HTML upload
    must not run its script there (stored XSS against the authorization pages). (An SVG
    can only be written as JSON: a raw `+xml` body is read as FHIR XML.)"""
    for media in ("text/html",) if written_as == "raw" else ("text/html", "image/svg+xml"):
        if written_as == "raw":
            created = httpx.post(
                f"{server.base}/Binary", content=_SCRIPT, headers={"Content-Type": media}
            )
        else:
            data = base64.b64encode(_SCRIPT).decode()
            created = httpx.post(
                f"{server.base}/Binary",
                json={"resourceType": "Binary", "contentType": media, "data": data},
                headers={"Content-Type": "application/fhir+json"},
            )
        assert created.status_code == 201, created.text
        location = created.headers["Location"].split("/_history")[0]
        for method in ("GET", "HEAD"):
            served = httpx.request(method, location, headers={"Accept": media})
            assert served.status_code == 200
            assert served.headers["content-type"].startswith(media)
            assert served.headers["x-content-type-options"] == "nosniff"
            policy = served.headers["content-security-policy"]
            assert "sandbox" in policy and "default-src 'none'" in policy


def _cut_short(server: ServerProcess, path: str, content_type: str) -> None:
    """Send a request whose body stops after 10 of its 1000 bytes, then hang up."""
    host = f"127.0.0.1:{server.port}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode() + b'{"a": "b",')
        time.sleep(0.2)


def test_a_body_cut_short_by_the_client_is_not_a_server_error(
    server: ServerProcess, root: str
) -> None:
    """A client that hangs up mid-body (a truncated upload) was a 500 with two tracebacks
    in the log and a 500 in the metrics: an on-call page anyone could send."""
    cuts = [
        ("/fhir/Binary", "model/stl"),
        ("/fhir/Patient", "application/fhir+json"),
        ("/cds-services/ascvd-10-year-risk", "application/json"),
        ("/cds-services/ascvd-10-year-risk/feedback", "application/json"),
    ]
    for path, content_type in cuts:
        _cut_short(server, path, content_type)
    deadline = time.monotonic() + 10
    while "/feedback answered" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.log.read_text()
    assert "/feedback answered 400" in log
    assert "unexpected error" not in log and "Traceback" not in log
    metrics = httpx.get(f"{root}/metrics").text
    assert 'status="500"' not in metrics
    assert httpx.get(f"{server.base}/metadata").status_code == 200


# --- orthosis orders ---

_FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
_NOT_AN_ORTHOSIS = {"coding": [{"system": "http://snomed.info/sct", "code": "58938008"}]}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"codeCodeableConcept": _NOT_AN_ORTHOSIS}, "not a custom foot orthosis order"),
        ({"subject": {"reference": "Group/g1"}}, "Patient/[id]"),
        ({"subject": {"reference": "http://elsewhere.example/Patient/p1"}}, "Patient/[id]"),
        ({"subject": {"reference": "#p1"}}, "Patient/[id]"),
        ({"requester": None}, "requester"),
    ],
)
def test_design_refuses_orders_it_cannot_issue_devices_for(
    server: ServerProcess, change: dict[str, Any], named: str
) -> None:
    """Each of these was designed and issued: Devices for a Group or another server's
    patient (and print files whose securityContext pointed there), an MDR statement with
    an 'unknown' prescriber, a design for a DeviceRequest that is not an orthosis order."""
    with httpx.Client(base_url=server.base, headers=_FHIR, timeout=120) as client:
        for observation in MEASUREMENTS:
            client.put(f"Observation/{observation['id']}", json=observation)
        order = device_request(
            f"dr-{abs(hash(named)) % 10_000}-{len(str(change))}",
            "left",
            supportingInfo=[{"reference": f"Observation/{m['id']}"} for m in MEASUREMENTS],
        )
        order.update(change)
        order = {k: v for k, v in order.items() if v is not None}
        assert client.put(f"DeviceRequest/{order['id']}", json=order).status_code in (200, 201)
        refused = client.post(f"DeviceRequest/{order['id']}/$design-orthosis")
        assert refused.status_code == 422, refused.text
        assert named in refused.json()["issue"][0]["diagnostics"]
        devices = client.get("Device", params={"_count": "1", "_total": "accurate"}).json()
        made = [e["resource"] for e in devices.get("entry", ())]
        assert not [d for d in made if d.get("patient", {}).get("reference") != "Patient/p1"]


def test_a_second_design_of_an_order_while_one_runs_is_a_409(server: ServerProcess) -> None:
    """Two clients (or a double click) designing one order at once issued two sets of
    Devices, print files and MDR statements for one prescription."""
    with httpx.Client(base_url=server.base, headers=_FHIR, timeout=120) as client:
        for observation in MEASUREMENTS:
            client.put(f"Observation/{observation['id']}", json=observation)
        order = device_request(
            "dr-twice",
            "pair",
            supportingInfo=[{"reference": f"Observation/{m['id']}"} for m in MEASUREMENTS],
        )
        assert client.put("DeviceRequest/dr-twice", json=order).status_code in (200, 201)
        first = client.post(
            "DeviceRequest/dr-twice/$design-orthosis", headers={"Prefer": "respond-async"}
        )
        assert first.status_code == 202, first.text
        second = client.post("DeviceRequest/dr-twice/$design-orthosis")
        assert second.status_code == 409, second.text
        message = second.json()["issue"][0]["diagnostics"]
        assert "being designed already" in message and first.json()["id"] in message
        deadline = time.monotonic() + 120
        while client.get(first.headers["Content-Location"]).json()["status"] not in (
            "completed",
            "failed",
        ):
            assert time.monotonic() < deadline, "the first design did not end"
            time.sleep(0.2)
        tasks = client.get("Task", params={"focus": "DeviceRequest/dr-twice"}).json()
        assert [e["resource"]["status"] for e in tasks["entry"]] == ["completed"]
        again = client.post("DeviceRequest/dr-twice/$design-orthosis")  # once it has ended
        assert again.status_code == 200, again.text


# --- operations endpoints and routing ---


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/cds-services/ascvd-10-year-risk", 405),
        ("PUT", "/cds-services", 405),
        ("GET", "/cds-services/ascvd-10-year-risk/feedback", 405),
        ("POST", "/health/live", 405),
        ("DELETE", "/metrics", 405),
        ("GET", "/cds-services/a/b/c", 404),
        ("GET", "/no-such-endpoint", 404),
    ],
)
def test_unknown_routes_and_methods_answer_an_operation_outcome(
    root: str, method: str, path: str, status: int
) -> None:
    """Outside /fhir the router's own 404/405 answered {"detail": ...}, not an
    OperationOutcome carrying the request id like every other error."""
    answer = httpx.request(method, root + path, headers={"X-Request-ID": "hostile-route-1"})
    assert answer.status_code == status
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "hostile-route-1" in outcome["issue"][0]["diagnostics"]
    if status == 405:
        assert answer.headers["allow"]


def test_request_ids_with_crlf_or_junk_are_replaced_not_echoed(
    server: ServerProcess, root: str
) -> None:
    for sent in (b"abc\r\nSet-Cookie: a=1", b"a" * 129, b"<script>", "\u00e9".encode()):
        head = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Request-ID: %s\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head % (server.port, sent))
            answer = sock.recv(65536).split(b"\r\n\r\n")[0].lower()
        assert b"set-cookie" not in answer
        assert answer.startswith(b"http/1.1 200")
        (line,) = [h for h in answer.split(b"\r\n") if h.startswith(b"x-request-id:")]
        assert b"<" not in line and len(line) <= len(b"x-request-id: ") + 128


def test_metrics_labels_stay_bounded_under_hostile_paths(root: str, server: ServerProcess) -> None:
    with httpx.Client(timeout=60) as http:  # one client: a new one per request costs 50 ms
        for n in range(50):
            http.get(f"{server.base}/Type{n}%22%7D%0Afake_total%201")
            http.get(f"{server.base}/Patient/{n}/$op{n}")
            http.get(f"{root}/random-{n}")
        metrics = http.get(f"{root}/metrics").text
    assert "fake_total" not in metrics and "random-" not in metrics and "$op1" not in metrics
    assert "Type1" not in metrics


# --- CDS feedback ---


def _feedback(root: str, item: dict[str, Any]) -> httpx.Response:
    base = {"card": HOOK_INSTANCE, "outcomeTimestamp": "2026-11-01T00:00:00Z"}
    url = f"{root}/cds-services/ascvd-10-year-risk/feedback"
    return httpx.post(url, json={"feedback": [{**base, **item}]}, timeout=60)


@pytest.mark.parametrize(
    "item",
    [
        {"card": "c" * 100_000, "outcome": "overridden", "overrideReason": {"userComment": "x"}},
        {"outcome": "accepted", "acceptedSuggestions": [{"id": "s"}] * 100_000},
        {"outcome": "accepted", "acceptedSuggestions": [{"id": "s" * 100_000}]},
        {
            "outcome": "overridden",
            "overrideReason": {"reason": {"code": "c" * 100_000, "system": "s"}},
        },
        {
            "outcome": "overridden",
            "overrideReason": {"reason": {"code": "c", "system": "s", "display": ["x"] * 1000}},
        },
    ],
)
def test_feedback_that_would_store_unbounded_text_is_refused(
    root: str, item: dict[str, Any]
) -> None:
    """Each of these was stored as sent (only userComment had a limit): megabytes into the
    auth store per call."""
    refused = _feedback(root, item)
    assert refused.status_code == 400, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"


def test_feedback_within_the_limits_is_stored(root: str) -> None:
    reason = {"reason": {"code": "c", "system": "s", "display": "d"}, "userComment": "u" * 4096}
    assert _feedback(root, {"outcome": "overridden", "overrideReason": reason}).status_code == 200
    accepted = {"outcome": "accepted", "acceptedSuggestions": [{"id": "s" * 128}] * 100}
    assert _feedback(root, accepted).status_code == 200
