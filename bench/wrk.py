"""Run a workload with wrk and parse what it prints.

Each workload is `bench/lua/common.lua` followed by `bench/lua/<workload>.lua`; common.lua's
`done()` prints one `@@BENCH_JSON@@ {...}` line. `parse_wrk_output` reads that line and falls
back to wrk's own text report (`--latency`) when it is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

LUA_DIR = Path(__file__).parent / "lua"
JSON_MARKER = "@@BENCH_JSON@@"
WORKLOADS = ("read", "create", "update", "mixed")


@dataclass
class LoadResult:
    """What one load run measured. Latencies in milliseconds; None when not reported."""

    requests: int
    duration_s: float
    p50_ms: float | None
    p99_ms: float | None
    statuses: dict[int, int] = field(default_factory=dict)
    socket_errors: int = 0
    non_2xx: int = 0
    server_cpu_s: float | None = None  # user + system CPU of the server's processes

    @property
    def cpu_per_request_us(self) -> float | None:
        """Server CPU per request in microseconds: a figure that holds across machines."""
        if self.server_cpu_s is None or not self.requests:
            return None
        return self.server_cpu_s / self.requests * 1e6

    @property
    def throughput(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def error_detail(self) -> str:
        """`0`, or the count followed by what made it up: `12 (409×10, socket×2)`."""
        if not self.errors:
            return "0"
        parts = [
            f"{status}×{n}"
            for status, n in sorted(self.statuses.items())
            if not 200 <= status < 300
        ]
        if self.non_2xx and not parts:
            parts.append(f"non-2xx×{self.non_2xx}")
        if self.socket_errors:
            parts.append(f"socket×{self.socket_errors}")
        return f"{self.errors} ({', '.join(parts)})"


class WrkOutputError(ValueError):
    """wrk printed neither the JSON line nor a report that could be parsed."""


def find_wrk(install: bool = True) -> str | None:
    """The wrk executable; installs the Debian package when missing and allowed to."""
    found = shutil.which("wrk")
    if found or not install:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        print("wrk not found, and apt-get cannot be used here (needs root)", file=sys.stderr)
        return None
    for command in (
        ["apt-get", "install", "-y", "-q", "wrk"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "wrk"],
    ):
        print(f"wrk not found; running: {' '.join(command)}", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=False)
        if command[1] == "install" and done.returncode == 0:
            return shutil.which("wrk")
    return None


def wrk_version(wrk: str) -> str:
    """`wrk 4.1.0` or similar; wrk prints its version in its usage text."""
    text = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    match = re.search(r"wrk (?:\S+/)?(\S+)", text.stdout + text.stderr)
    return f"wrk {match.group(1)}" if match else "wrk"


def script_for(workload: str, directory: Path) -> Path:
    """Writes common.lua + <workload>.lua into `directory` and returns the combined file."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}")
    source = (LUA_DIR / "common.lua").read_text() + "\n" + (LUA_DIR / f"{workload}.lua").read_text()
    path = directory / f"{workload}.lua"
    path.write_text(source)
    return path


def run_wrk(
    wrk: str,
    base_url: str,
    workload: str,
    data_dir: Path,
    *,
    duration: int,
    connections: int,
    threads: int,
    label: str,
) -> LoadResult:
    """Runs one workload for `duration` seconds and returns what wrk measured."""
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script_for(workload, data_dir)),
        base_url,
    ]
    env = {**os.environ, "BENCH_DATA": str(data_dir), "BENCH_RUN": f"{workload}{time.time_ns()}"}
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            tick_seconds(label, duration, lambda: process.poll() is None)
            stdout, stderr = process.communicate()
        except BaseException:
            process.kill()  # interrupted: do not leave wrk loading the server
            raise
    if process.returncode != 0:
        raise WrkOutputError(f"wrk exited with {process.returncode}: {stderr.strip()}")
    return parse_wrk_output(stdout)


def tick_seconds(label: str, duration: int, is_running: Callable[[], bool]) -> None:
    """A progress bar over the run's seconds while the load generator works."""
    with tqdm(
        total=duration, desc=label, leave=False, bar_format="{desc}: {bar} {n_fmt}/{total_fmt} s"
    ) as bar:
        started = time.monotonic()
        while is_running() and bar.n < duration:
            time.sleep(0.25)
            bar.update(min(duration, int(time.monotonic() - started)) - bar.n)


def parse_wrk_output(text: str) -> LoadResult:
    """Parses the JSON line from common.lua's `done()`, else wrk's text report."""
    for line in text.splitlines():
        if line.startswith(JSON_MARKER):
            return from_json(json.loads(line[len(JSON_MARKER) :]))
    return from_text(text)


def from_json(data: dict[str, Any]) -> LoadResult:
    errors = data["errors"]
    statuses = {int(status): int(n) for status, n in data.get("statuses", {}).items()}
    non_2xx = sum(n for status, n in statuses.items() if not 200 <= status < 300)
    latency = data["latency_us"]
    return LoadResult(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        p50_ms=latency["p50"] / 1000,
        p99_ms=latency["p99"] / 1000,
        statuses=statuses,
        socket_errors=sum(int(errors[kind]) for kind in ("connect", "read", "write", "timeout")),
        # wrk counts only status > 399; the Lua counts every status, so trust the larger.
        non_2xx=max(non_2xx, int(errors["status"])),
    )


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def from_text(text: str) -> LoadResult:
    """wrk's own report: `N requests in 10.00s`, the latency distribution, error lines."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", text)
    if not total:
        raise WrkOutputError(f"no request count in wrk output:\n{text}")
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return LoadResult(
        requests=int(total.group(1)),
        duration_s=float(total.group(2)) * UNITS_S[total.group(3)],
        p50_ms=percentile_ms(text, "50"),
        p99_ms=percentile_ms(text, "99"),
        socket_errors=sum(map(int, socket.groups())) if socket else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def percentile_ms(text: str, percent: str) -> float | None:
    match = re.search(rf"^\s*{percent}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    return float(match.group(1)) * UNITS_MS[match.group(2)] if match else None
