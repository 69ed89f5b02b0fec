"""Plain reads take the direct route (`fhir_server.api.fast_path`) and answer exactly as the
general stack does: the same status, headers and body, errors, request ids and metrics.

A request that carries `Content-Length: 0` is no plain read and takes the general stack,
so each case is sent both ways and the answers compared."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import ServerProcess

VARYING = {"date", "x-request-id", "content-length"}
GENERAL = {"Content-Length": "0"}  # a body header: not a plain read


def _both(client: httpx.Client, method: str, url: str, **headers: str) -> list[httpx.Response]:
    return [client.request(method, url, headers={**headers, **extra}) for extra in ({}, GENERAL)]


def _same(fast: httpx.Response, general: httpx.Response) -> None:
    assert fast.status_code == general.status_code
    assert {k: v for k, v in fast.headers.items() if k not in VARYING} == {
        k: v for k, v in general.headers.items() if k not in VARYING
    }
    assert _content(fast) == _content(general)


def _content(answer: httpx.Response) -> object:
    """The body without what differs between two answers: request ids, a Bundle's own id
    and time."""
    text = re.sub(r"request id [0-9a-zA-Z._:@/+=-]+", "", answer.text)
    if "json" not in answer.headers.get("content-type", "") or not text:
        return text
    body = json.loads(text)
    if body.get("resourceType") == "Bundle":
        body.pop("id"), body.pop("meta")
    return body


@pytest.fixture(scope="module")
def patient(client_module: httpx.Client) -> str:
    created = client_module.post(
        "/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Fastpath"}]},
        headers={"Content-Type": "application/fhir+json"},
    )
    assert created.status_code == 201
    return str(created.json()["id"])


@pytest.fixture(scope="module")
def client_module(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=60) as http:
        yield http


@pytest.mark.parametrize(
    ("method", "url", "headers"),
    [
        ("GET", "/Patient/{id}", {}),
        ("HEAD", "/Patient/{id}", {}),
        ("GET", "/Patient/{id}", {"Accept": "application/fhir+xml"}),
        ("GET", "/Patient/{id}?_pretty=true&_summary=true", {}),
        ("GET", "/Patient/{id}/_history/1", {}),
        ("GET", "/Patient?family=Fastpath", {}),
        ("GET", "/Patient/{id}", {"If-None-Match": 'W/"1"'}),
        ("GET", "/Patient/does-not-exist", {}),
        ("GET", "/Patient/{id}", {"Accept": "image/png"}),
        ("GET", "/Patient?birthdate=not-a-date", {"Accept": "application/fhir+xml"}),
        ("GET", "/NoSuchType/1", {}),
        ("GET", "/Patient/{id}", {"Host": "evil.example"}),
        ("GET", "/.well-known/smart-configuration", {}),
    ],
)
def test_a_plain_read_answers_as_the_general_stack(
    client_module: httpx.Client, patient: str, method: str, url: str, headers: dict[str, str]
) -> None:
    fast, general = _both(client_module, method, url.format(id=patient), **headers)
    _same(fast, general)


def test_head_answers_the_headers_a_get_would(client_module: httpx.Client, patient: str) -> None:
    got = client_module.get(f"/Patient/{patient}")
    head = client_module.head(f"/Patient/{patient}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["etag"] == got.headers["etag"]


def test_errors_of_plain_reads_name_the_request_id(client_module: httpx.Client) -> None:
    answer = client_module.get("/Patient/not-there", headers={"X-Request-ID": "fast-1"})
    assert answer.status_code == 404
    assert answer.headers["x-request-id"] == "fast-1"
    assert "request id fast-1" in answer.json()["issue"][0]["diagnostics"]
    assert answer.headers["content-type"] == "application/fhir+json; charset=utf-8"


def test_plain_reads_are_counted_in_the_metrics(
    client_module: httpx.Client, server: ServerProcess, patient: str
) -> None:
    def reads() -> float:
        text = httpx.get(server.base.removesuffix("/fhir") + "/metrics").text
        pattern = (
            r"fhir_http_requests_total"
            r'\{interaction="read",resource_type="Patient",status="200"\} (\S+)'
        )
        found = re.search(pattern, text)
        return float(found.group(1)) if found else 0.0

    before = reads()
    for _ in range(3):
        assert client_module.get(f"/Patient/{patient}").status_code == 200
    assert reads() == before + 3
