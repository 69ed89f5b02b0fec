"""A real server process for end-to-end tests: `fhir-server serve` under uvicorn."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


WORKERS_ENV = "FHIR_TEST_WORKERS"


def test_workers() -> str:
    """Worker processes for test servers: FHIR_TEST_WORKERS (e.g. 2 to run the suite against
    a multi-process server), else 1."""
    return os.environ.get(WORKERS_ENV) or "1"


class ServerProcess:
    """`fhir-server serve` on a free port with the given environment; started and stopped.

    It runs `test_workers()` worker processes unless `FHIR_WORKERS` is given."""

    def __init__(self, database: Path, **env: str) -> None:
        self.database = database
        self.port = free_port()
        # authorization off unless a test asks for it (FHIR_AUTH=on); the UCUM tables of the
        # CDS models and of monitoring (seconds of CPU each) built only by a server that
        # converts a unit
        self.env = {
            **os.environ,
            "FHIR_DATABASE": str(database),
            "FHIR_AUTH": "off",
            "FHIR_CDS_WARM_UNITS": "false",
            "FHIR_MONITORING_WARM_UNITS": "false",
            "FHIR_WORKERS": test_workers(),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def start(self, timeout: float | None = None) -> ServerProcess:
        """Start and wait until it answers (default: 30 s, 180 s with several workers,
        which start side by side on a machine that may be busy)."""
        if timeout is None:
            timeout = 30.0 if self.env.get("FHIR_WORKERS", "1") == "1" else 180.0
        command = [
            str(Path(sys.executable).parent / "fhir-server"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.log = self.database.parent / f"server-{self.port}.log"
        with self.log.open("wb") as log:  # a file, not a pipe: a full pipe would block the server
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.log.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"server exited early ({self.process.returncode}): {err}")
            try:
                if httpx.get(f"{self.base}/metadata", timeout=2).status_code == 200 and (
                    self._mllp_ready()
                ):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not answer /fhir/metadata in time")

    def _mllp_ready(self) -> bool:
        """The MLLP listener (when configured) accepts: with several workers only the
        leader listens, and it may take its lease after the HTTP side answers."""
        port = int(self.env.get("FHIR_MLLP_PORT") or 0)
        if not port:
            return True
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the server and its worker processes: no shutdown hooks, as in a crash."""
        if self.process:  # the group too: workers may outlive their supervisor
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
