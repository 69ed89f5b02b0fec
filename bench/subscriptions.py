"""The Subscriptions figures of `make bench`: Observation writes with no subscription and
with 1,000 active rest-hook subscriptions, over real HTTP.

Each of the 1,000 subscriptions is `Observation?code=http://loinc.org|bench-<n>` with a
loopback receiver as its endpoint. Two kinds of writes: Observations with codes no
subscription names (the cost on the write path: matching), and Observations with a random
one of the subscribed codes, so that every write matches exactly one subscription: it is
matched, queued in the outbox within its transaction and delivered to the receiver by the
same server process (which shares the machine with the receiver and the clients).
`THREADS` clients write side by side; the slowdown compares the write throughput with
that of the same writes without subscriptions (target: at most 20% less).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import server
from bench.hook_receiver import HookReceiver
from bench.report import ms, table

SUBSCRIPTIONS = 1000
WRITES = 2000
QUICK_WRITES = 400
THREADS = 4
SLOWDOWN_TARGET = 0.20
LOINC = "http://loinc.org"
COLUMNS = ("subscriptions", "writes/s", "p50", "p95", "delivered", "target", "met?")


@dataclass
class Result:
    subscriptions: int
    matching: bool
    per_second: float
    p50: float
    p95: float
    delivered: int


def observation(code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/bench"},
        "valueQuantity": {"value": 72, "unit": "/min"},
    }


def subscribe(client: httpx.Client, receiver: HookReceiver, count: int) -> None:
    entries = [
        {
            "resource": {
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "bench",
                "criteria": f"Observation?code={LOINC}|bench-{n}",
                "channel": {"type": "rest-hook", "endpoint": f"{receiver.url}/hook/{n}"},
            },
            "request": {"method": "POST", "url": "Subscription"},
        }
        for n in range(count)
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    client.post("", json=bundle).raise_for_status()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = client.get("Subscription", params={"status": "active", "_summary": "count"})
        if found.json().get("total") == count:
            return
        time.sleep(0.2)
    raise RuntimeError("the subscriptions did not become active")


def write(base: str, writes: int, seed: int, prefix: str) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(seed + n)
        mine = []
        with httpx.Client(base_url=base, timeout=60) as client:
            for _ in range(writes // THREADS):
                body = observation(f"{prefix}-{rng.randrange(SUBSCRIPTIONS)}")
                started = time.perf_counter()
                client.post("Observation", json=body).raise_for_status()
                mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies


def run_case(scratch: Path, subscriptions: int, writes: int) -> list[Result]:
    """The two kinds of writes against one server with `subscriptions` subscriptions."""
    receiver = HookReceiver()
    env = {"FHIR_SUBSCRIPTION_ALLOWED_HOSTS": "127.0.0.1"}
    db = scratch / f"subscriptions-{subscriptions}.db"
    results = []
    try:
        with server.fhir_server(db, scratch / f"subscriptions-{subscriptions}.log", env=env) as s:
            with httpx.Client(base_url=s.fhir_base, timeout=120) as client:
                if subscriptions:
                    subscribe(client, receiver, subscriptions)
            write(s.fhir_base, THREADS * 25, seed=1, prefix="warm")
            for matching in (False, True):
                before = receiver.count()
                elapsed, latencies = write(
                    s.fhir_base, writes, seed=2, prefix="bench" if matching else "other"
                )
                time.sleep(1.0)  # let delivery catch up before counting
                latencies.sort()
                results.append(
                    Result(
                        subscriptions,
                        matching,
                        len(latencies) / elapsed,
                        statistics.median(latencies),
                        latencies[int(len(latencies) * 0.95)],
                        receiver.count() - before,
                    )
                )
        return results
    finally:
        receiver.stop()


def measure(scratch: Path, quick: bool = False) -> list[Result]:
    writes = QUICK_WRITES if quick else WRITES
    return [*run_case(scratch, 0, writes), *run_case(scratch, SUBSCRIPTIONS, writes)]


def render(results: list[Result]) -> str:
    without = {r.matching: r.per_second for r in results if r.subscriptions == 0}
    rows: list[tuple[str, ...]] = []
    for r in results:
        kind = "each write matches one" if r.matching else "writes match none"
        label = f"{r.subscriptions:,} active, {kind}"
        if r.subscriptions == 0:
            label = f"none, {'subscribed' if r.matching else 'other'} codes"
            target, met = "-", "-"
        else:
            slowdown = 1 - r.per_second / without[r.matching]
            label += f" ({slowdown:+.0%})"
            target = f"<= {SLOWDOWN_TARGET:.0%} slower"
            met = "yes" if slowdown <= SLOWDOWN_TARGET else "NO"
        rows.append(
            (
                label,
                f"{r.per_second:,.0f}",
                ms(r.p50 * 1000),
                ms(r.p95 * 1000),
                f"{r.delivered:,}",
                target,
                met,
            )
        )
    return table(COLUMNS, rows)


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fhir-bench-subs-") as scratch:
        print(render(measure(Path(scratch), quick="--quick" in sys.argv)))
