"""An ASGI app served by uvicorn in a thread on a free port: real HTTP, for tests that
need to hand the app objects a separate server process cannot have (e.g. a fake)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from tests.support.server import free_port


class ThreadedApp:
    """`app` under uvicorn on 127.0.0.1:`port`; `start()` returns when it listens."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ThreadedApp:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
