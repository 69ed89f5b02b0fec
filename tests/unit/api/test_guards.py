"""The HTTP guards as functions: allowed Host names, media types per endpoint, body deadline."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message, Receive, Scope, Send

from fhir_server.api.asgi import RequestTimeout
from fhir_server.api.hosts import allowed_hosts, host_matches
from fhir_server.api.media_types import MediaTypeMiddleware
from fhir_server.api.timeouts import BodyTimeoutMiddleware
from fhir_server.settings import Settings


def test_default_hosts_are_the_bound_and_loopback_names_with_the_port() -> None:
    hosts = allowed_hosts(Settings(host="10.1.2.3", port=8080, allowed_hosts=""))
    assert host_matches("10.1.2.3:8080", hosts) and host_matches("localhost:8080", hosts)
    assert host_matches("[::1]:8080", hosts) and host_matches("LOCALHOST:8080", hosts)
    assert not host_matches("10.1.2.3:9999", hosts)
    assert not host_matches("evil.example:8080", hosts) and not host_matches("evil.example", hosts)


def test_configured_hosts_and_the_base_url_host() -> None:
    settings = Settings(
        allowed_hosts="fhir.example.org, lb.internal:8443",
        base_url="https://public.example.org/fhir",
    )
    hosts = allowed_hosts(settings)
    assert host_matches("fhir.example.org", hosts) and host_matches("fhir.example.org:443", hosts)
    assert host_matches("lb.internal:8443", hosts) and not host_matches("lb.internal:80", hosts)
    assert host_matches("public.example.org", hosts) and not host_matches("localhost:8080", hosts)
    assert host_matches("anything", allowed_hosts(Settings(allowed_hosts="*")))


GUARD = MediaTypeMiddleware(None, "/fhir", "/hl7v2", "x-application/hl7-v2+er7")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "path", "media"),
    [
        ("POST", "/fhir/Patient", "application/fhir+json"),
        ("PUT", "/fhir/Patient/1", "application/fhir+xml"),
        ("PATCH", "/fhir/Patient/1", "application/json-patch+json"),
        ("POST", "/fhir/Patient/_search", "application/x-www-form-urlencoded"),
        ("POST", "/fhir/_search", "application/x-www-form-urlencoded"),
        ("POST", "/fhir/Patient/1/Observation/_search", "application/x-www-form-urlencoded"),
        ("POST", "/hl7v2", "x-application/hl7-v2+er7"),
        ("POST", "/elsewhere", "text/plain"),
    ],
)
def test_documented_media_types_pass(method: str, path: str, media: str) -> None:
    assert GUARD._problem(method, path, media) is None


@pytest.mark.parametrize(
    ("method", "path", "media"),
    [
        ("POST", "/fhir/Patient", "application/x-www-form-urlencoded"),
        ("POST", "/fhir/$reindex", "application/x-www-form-urlencoded"),
        ("POST", "/fhir/Patient", "text/plain"),
        ("POST", "/fhir/Patient", "multipart/form-data"),
        ("PUT", "/fhir/Patient/1", ""),
        ("POST", "/fhir/Patient", "application/json-patch+jsonx"),
        ("POST", "/hl7v2", "text/plain"),
        ("POST", "/hl7v2", "application/fhir+json"),
    ],
)
def test_other_media_types_are_refused(method: str, path: str, media: str) -> None:
    assert GUARD._problem(method, path, media) is not None


async def _never_finishing_body() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _reads_body(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass


async def test_a_body_that_stops_arriving_times_out() -> None:
    guard = BodyTimeoutMiddleware(_reads_body, timeout=0.05, min_rate=1000)
    with pytest.raises(RequestTimeout) as raised:
        await guard({"type": "http", "method": "POST"}, _never_finishing_body, _no_send)
    assert raised.value.status == 408 and raised.value.headers == {"Connection": "close"}


async def test_each_chunk_extends_the_body_deadline() -> None:
    chunks = [b"x" * 1000] * 5 + [b""]

    async def steady() -> Message:  # each chunk comes after longer than the first deadline
        await asyncio.sleep(0.15)
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    guard = BodyTimeoutMiddleware(_reads_body, timeout=0.3, min_rate=1000)
    await guard({"type": "http", "method": "PUT"}, steady, _no_send)
    assert chunks == []


async def _no_send(message: Message) -> None:
    raise AssertionError("nothing is sent")
