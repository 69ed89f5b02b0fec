"""Start and stop the servers under test as real processes, and read their memory.

`fhir_server(db_path)` runs `fhir-server serve` on a scratch SQLite file; `bare_server()` runs
the ceiling app (bench/bare_app.py) under uvicorn with the options the real server uses.
Both are context managers: the process is stopped on exit, errors and Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent
# What `fhir-server serve` runs: uvicorn, one worker, uvloop and httptools.
UVICORN_OPTIONS = [
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--workers",
    "1",
    "--no-server-header",
    "--log-level",
    "warning",
    "--no-access-log",
]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class ServerStartError(RuntimeError):
    """The server exited or did not answer `GET /fhir/metadata` with 200 in time."""


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/fhir"

    def memory(self) -> Memory:
        return process_tree_memory(self.process.pid)

    def cpu(self) -> float:
        """CPU seconds (user + system) the server's processes have used so far."""
        return process_tree_cpu(self.process.pid)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Memory:
    """Resident set now and at its peak, in MiB, summed over the process and its children."""

    rss_mb: float
    hwm_mb: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def fhir_server(
    db_path: Path,
    log_path: Path,
    *,
    auth: bool = False,
    workers: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[RunningServer]:
    """`fhir-server serve` on a free port with FHIR_DATABASE=db_path, until the block ends.

    Authorization is off unless `auth`; with it, FHIR_BASE_URL is the server's own base
    (the audience of the tokens `auth_env` lets `fhir-server auth token` mint). `workers`
    worker processes; by default FHIR_WORKERS, else one; `env`: more settings."""
    port = free_port()
    command = [str(BIN_DIR / "fhir-server"), "serve", "--host", HOST, "--port", str(port)]
    settings = {
        "FHIR_WORKERS": "1",  # the rows measure one process unless FHIR_WORKERS says otherwise
        **os.environ,
        **({"FHIR_WORKERS": str(workers)} if workers else {}),
        "FHIR_DATABASE": str(db_path),
        **auth_env(auth, port),
        **(env or {}),
    }
    with running(command, settings, port, log_path) as server:
        yield server


def auth_env(auth: bool, port: int) -> dict[str, str]:
    """The environment that turns authorization on (with this port's base URL) or off."""
    if not auth:
        return {"FHIR_AUTH": "off"}
    return {"FHIR_AUTH": "on", "FHIR_BASE_URL": f"http://{HOST}:{port}/fhir"}


@contextlib.contextmanager
def bare_server(patient_file: Path, log_path: Path) -> Iterator[RunningServer]:
    """The bare FastAPI ceiling app serving the bytes in `patient_file`."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare_app:app",
        "--app-dir",
        str(PROJECT_ROOT),
        "--host",
        HOST,
        "--port",
        str(port),
        *UVICORN_OPTIONS,
    ]
    env = {**os.environ, "BENCH_PATIENT_FILE": str(patient_file)}
    with running(command, env, port, log_path) as server:
        yield server


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], port: int, log_path: Path
) -> Iterator[RunningServer]:
    with log_path.open("wb") as log:
        # Own session: Ctrl-C reaches only us, and we stop the server in order.
        process = subprocess.Popen(
            command,
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(process, port, log_path)
    try:
        wait_until_ready(server)
        yield server
    finally:
        stop(process)


def wait_until_ready(server: RunningServer, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerStartError(
                f"server exited with {server.process.returncode}; "
                f"its log ends with:\n{server.log_tail()}"
            )
        if metadata_status(server.fhir_base) == 200:
            return
        time.sleep(0.2)
    raise ServerStartError(
        f"no 200 from {server.fhir_base}/metadata in {timeout:.0f} s; "
        f"its log ends with:\n{server.log_tail()}"
    )


def wait_until_idle(
    server: RunningServer, timeout: float = START_TIMEOUT_S, busy_share: float = 0.05
) -> None:
    """Wait until the server's processes use under `busy_share` of a core over half a
    second: the first worker answering does not mean the others have loaded their
    registries and terminology, and that start-up CPU must not count against a workload."""
    deadline = time.monotonic() + timeout
    before = server.cpu()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = server.cpu()
        if now - before < 0.5 * busy_share:
            return
        before = now


def metadata_status(fhir_base: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{fhir_base}/metadata", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ValueError):
        return None


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL to the group if it hangs."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def process_tree_memory(pid: int) -> Memory:
    """VmRSS and VmHWM from /proc, summed over `pid` and its descendants (workers)."""
    rss = hwm = 0
    for member in [pid, *descendants(pid)]:
        status = proc_status(member)
        rss += status.get("VmRSS", 0)
        hwm += status.get("VmHWM", 0)
    return Memory(rss_mb=rss / 1024, hwm_mb=hwm / 1024)


def process_tree_cpu(pid: int) -> float:
    """utime + stime from /proc/<pid>/stat, summed over `pid` and its descendants, plus
    what their exited children used (cutime + cstime), in seconds."""
    ticks = 0
    for member in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/<pid>/status; empty if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[name] = int(value.split()[0])
    return fields


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces and parentheses; the fields follow the last ')'.
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, pending = [], list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children.get(child, []))
    return found
