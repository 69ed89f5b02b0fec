"""A rest-hook receiver in its own process for the Subscriptions bench (so that it does
not share the bench clients' interpreter): `python -m bench.hook_receiver PORT` answers
every POST/PUT with 200 (HTTP/1.1, keep-alive) and `GET /count` with how many it got."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

received = 0
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        global received
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with lock:
            received += 1
        self._answer(b"")

    do_PUT = do_POST

    def do_GET(self) -> None:
        self._answer(str(received).encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


if __name__ == "__main__":
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
