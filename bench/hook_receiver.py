"""A rest-hook receiver in its own process for the Subscriptions and remote-monitoring
benches (so that it does not share the bench clients' interpreter):
`python -m bench.hook_receiver PORT` answers every POST/PUT with 200 (HTTP/1.1,
keep-alive), `GET /count` with how many it got, and `GET /seen` with a JSON object: for
each Communication it was sent (`PUT .../Communication/<id>`, the R4 rest-hook with a
payload), the reference its `about` starts with -> when the first such request arrived, as
`time.monotonic()` (CLOCK_MONOTONIC: the same clock in every process of the machine, so
the bench compares it with its own readings of it)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from bench.server import free_port

received = 0
seen: dict[str, float] = {}  # Communication.about[0].reference -> first arrival (monotonic)
lock = threading.Lock()


def about(body: bytes) -> str | None:
    """The first `about` reference of a Communication sent as JSON, or None."""
    try:
        reference = json.loads(body)["about"][0]["reference"]
    except (ValueError, LookupError, TypeError):
        return None
    return reference if isinstance(reference, str) else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        global received
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        alert = about(body) if "/Communication/" in self.path else None
        with lock:
            received += 1
            if alert is not None:
                seen.setdefault(alert, arrived)
        self._answer(b"")

    do_PUT = do_POST

    def do_GET(self) -> None:
        with lock:
            body = json.dumps(seen) if self.path == "/seen" else str(received)
        self._answer(body.encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class HookReceiver:
    """`bench.hook_receiver` in its own process on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "bench.hook_receiver", str(self.port)]
        self.process = subprocess.Popen(command)
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                self.count()
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the hook receiver did not start")

    def count(self) -> int:
        return int(httpx.get(f"{self.url}/count", timeout=5).text)

    def seen(self) -> dict[str, float]:
        """What each Communication received is about -> when it arrived (monotonic)."""
        found: dict[str, float] = httpx.get(f"{self.url}/seen", timeout=5).json()
        return found

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


if __name__ == "__main__":
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
