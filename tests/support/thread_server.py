"""The FHIR app under uvicorn in a thread, on storage built in the test (e.g. mongomock).

A real HTTP server on a free port, like `ServerProcess`, for engines that exist only in the
test process: the MongoDB engine over the mongomock adapter. Unexpected errors the app logs
go to `log` (a file), so a failing test can show the traceback.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import uvicorn

from cds_hooks.service import CdsService
from fhir_server.api.app import create_app
from fhir_server.settings import Settings
from fhir_server.storage.base import Storage
from tests.support.server import free_port


class ThreadServer:
    """`create_app(settings, storage)` served by uvicorn in a daemon thread."""

    def __init__(
        self,
        storage: Storage,
        log: Path,
        *,
        cds_services: Iterable[CdsService] | None = None,
        **settings: str,
    ) -> None:
        self.port = free_port()
        self.cds_services = cds_services
        self.log = log
        self.storage = storage
        # bound where it listens (the allowed Host names follow), token checks off unless asked
        chosen = {"host": "127.0.0.1", "port": str(self.port), "auth": "off", **settings}
        self.settings = Settings(**chosen)  # type: ignore[arg-type]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._handler: logging.Handler | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 30.0) -> ThreadServer:
        self._handler = logging.FileHandler(self.log)
        logging.getLogger("fhir_server").addHandler(self._handler)
        config = uvicorn.Config(
            create_app(self.settings, self.storage, cds_services=self.cds_services),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()), daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/metadata", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("threaded server did not answer /fhir/metadata in time")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._handler is not None:
            logging.getLogger("fhir_server").removeHandler(self._handler)
            self._handler.close()
