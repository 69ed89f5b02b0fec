"""Prefetch from another FHIR server over real loopback HTTP: a slow or huge answer cannot
hold a hook call (412's `Unavailable`), a missing resource is None."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from cds_hooks import prefetch
from cds_hooks.prefetch import RemoteServer, Unavailable


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/fhir/Patient/missing"):
            self.send_response(404)
            self.end_headers()
            return
        if self.path.startswith("/fhir/slow"):
            self.send_response(200)
            self.end_headers()
            for _ in range(20):  # a byte every 0.2 s: no read timeout, but no end either
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.2)
            return
        if self.path.startswith("/fhir/huge"):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b" " * (prefetch.MAX_FETCH_BYTES + 10))
            return
        self.send_response(200)
        self.end_headers()
        auth = self.headers.get("Authorization", "")
        self.wfile.write(b'{"resourceType": "Patient", "id": "%s"}' % auth.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    server.shutdown()
    server.server_close()


async def test_a_resource_and_a_missing_one(base) -> None:
    async with httpx.AsyncClient() as http:
        remote = RemoteServer(http, base, "tok")
        assert await remote.fetch("Patient/p1") == {"resourceType": "Patient", "id": "Bearer tok"}
        assert await remote.fetch("Patient/missing") is None


async def test_a_trickling_answer_is_cut_at_the_deadline(base, monkeypatch) -> None:
    monkeypatch.setattr(prefetch, "FETCH_DEADLINE", 1.0)
    async with httpx.AsyncClient() as http:
        start = time.monotonic()
        with pytest.raises(Unavailable, match="in time"):
            await RemoteServer(http, base, None).fetch("slow")
        assert time.monotonic() - start < 3


async def test_a_huge_answer_is_refused(base) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(Unavailable, match="too large"):
            await RemoteServer(http, base, None).fetch("huge")
