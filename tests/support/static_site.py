"""A static web site on a free port, in a thread: the test SMART app's pages, from another
origin than the FHIR server, as a real app would be."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from tests.support.server import free_port


class _Handler(SimpleHTTPRequestHandler):
    extra: ClassVar[dict[str, Path]] = {}

    def translate_path(self, path: str) -> str:
        name = path.split("?", 1)[0].lstrip("/")
        if name in self.extra:
            return str(self.extra[name])
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StaticSite:
    """`folder` served at `origin`; `extra` maps more paths (e.g. a bundle) to files."""

    def __init__(self, folder: Path, extra: dict[str, Path] | None = None) -> None:
        handler = type("Handler", (_Handler,), {"extra": dict(extra or {})})
        self.port = free_port()
        self.httpd = ThreadingHTTPServer(
            ("127.0.0.1", self.port), functools.partial(handler, directory=str(folder))
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StaticSite:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
