"""Fallback load generator for machines without wrk: processes of keep-alive HTTP clients.

It runs the same workloads as bench/lua/*.lua, but it shares the CPU with the server and
is much slower than wrk, so it can be the bottleneck; the report says when it was used.
"""

from __future__ import annotations

import http.client
import multiprocessing
import random
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from bench.wrk import LoadResult, tick_seconds

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
MIX = (("read", 70), ("create", 15), ("update", 10), ("search", 5))


class Workload:
    """Builds requests like common.lua does, from the same data directory."""

    def __init__(self, data_dir: Path, seed: int) -> None:
        self.ids = (data_dir / "ids.txt").read_text().split()
        self.identifiers = (data_dir / "identifiers.txt").read_text().split()
        self.body = (data_dir / "patient.json").read_text()
        token = data_dir / "token.txt"  # when there, an access token every request carries
        self.headers = dict(FHIR_JSON)
        if token.exists():
            self.headers["Authorization"] = f"Bearer {token.read_text().strip()}"
        self.rng = random.Random(seed)
        self.seed, self.counter = seed, 0

    def request(self, kind: str) -> tuple[str, str, str | None]:
        if kind == "mixed":
            kind = self.rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        if kind == "read":
            return "GET", f"/fhir/Patient/{self.rng.choice(self.ids)}", None
        if kind == "search":
            return "GET", f"/fhir/Patient?identifier={self.rng.choice(self.identifiers)}", None
        self.counter += 1
        body = self.body.replace("__MRN__", f"BENCH-P{self.seed}-{self.counter}")
        if kind == "create":
            return "POST", "/fhir/Patient", body
        resource_id = self.rng.choice(self.ids)
        body = body.replace("{", f'{{"id":"{resource_id}",', 1)
        return "PUT", f"/fhir/Patient/{resource_id}", body


def client_loop(
    base_url: str,
    workload: Workload,
    kind: str,
    deadline: float,
    latencies: list[float],
    statuses: Counter[int],
) -> None:
    url = urlsplit(base_url)
    assert url.hostname, f"no host in {base_url}"
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    while time.perf_counter() < deadline:
        method, path, body = workload.request(kind)
        started = time.perf_counter()
        try:
            connection.request(method, path, body=body, headers=workload.headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            status = 0
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[status] += 1
    connection.close()


def process_main(args: tuple[str, str, str, float, int, int]) -> tuple[list[float], Counter[int]]:
    base_url, data_dir, kind, duration, connections, seed = args
    deadline = time.perf_counter() + duration
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    threads = [
        threading.Thread(
            target=client_loop,
            args=(
                base_url,
                Workload(Path(data_dir), seed * 1000 + i),
                kind,
                deadline,
                latencies,
                statuses,
            ),
        )
        for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses


def run_python(
    base_url: str,
    workload: str,
    data_dir: Path,
    *,
    duration: int,
    connections: int,
    processes: int,
    label: str,
) -> LoadResult:
    """Runs `workload` for `duration` seconds with `connections` spread over `processes`."""
    per_process = max(1, connections // processes)
    jobs = [
        (base_url, str(data_dir), workload, float(duration), per_process, i)
        for i in range(processes)
    ]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pending = pool.map_async(process_main, jobs)
        tick_seconds(label, duration, lambda: not pending.ready())
        outcomes = pending.get()
    elapsed = time.perf_counter() - started
    latencies = sorted(ms for found, _ in outcomes for ms in found)
    statuses: Counter[int] = Counter()
    for _, seen in outcomes:
        statuses.update(seen)
    socket_errors = statuses.pop(0, 0)
    return LoadResult(
        requests=len(latencies),
        duration_s=min(elapsed, float(duration)) if latencies else elapsed,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        statuses=dict(statuses),
        socket_errors=socket_errors,
        non_2xx=sum(n for status, n in statuses.items() if not 200 <= status < 300),
    )


def percentile(ordered: list[float], percent: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]
