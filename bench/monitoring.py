"""The remote-monitoring figures of `make bench`: simulated devices posting vital signs.

Against `fhir-server serve` on a scratch SQLite database (authorization off: the figures are
the monitoring path's, the bearer-token cost is measured by the read rows), with
FHIR_MONITORING_RECIPIENTS naming a care team. Each of DEVICES simulated devices (one
patient each) posts one heart-rate reading a second for DURATION seconds, from one
asyncio process through httpx connection pools (not a thread per device). A device waits for
its answer before its next reading, so the load is bounded: at most one request in flight
per device, and nothing is sent after DURATION seconds (a device that fell behind a slow
server drops its remaining readings: the rate achieved says how many were taken). About
one reading in OUT_OF_BAND_EVERY is above the default band and raises an alert (the first
per patient; later ones find the alert open).

The care team's system is a rest-hook receiver on loopback in its own process
(bench/hook_receiver.py), subscribed before the run to `Communication?recipient=` the care
team with payload application/fhir+json (the server runs with
FHIR_SUBSCRIPTION_ALLOWED_HOSTS=127.0.0.1), so each alert reaches it as
`PUT .../Communication/<id>` with the Communication, whose `about` names the reading.

Reported: readings per second achieved, write latency p50/p99 counted from when the
reading was due (waiting for a pooled connection included), errors; the alert latency:
from the out-of-band reading's 201 (it is committed, its alert with it) to the receiver
getting the Communication about it (both instants are read from CLOCK_MONOTONIC, which
every process shares; a load generator slow to see its 201 can only make this figure
smaller), with how many of the alerts raised were delivered; and the CPU per reading.
`python -m bench.monitoring [--quick]` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import server
from bench.hook_receiver import HookReceiver
from bench.report import table

DEVICES = 1000
DURATION_S = 60
QUICK_DEVICES, QUICK_DURATION_S = 100, 10
OUT_OF_BAND_EVERY = 100
DRAIN_S = 30.0  # after the run, how long the last alerts may take to arrive
GROUP, GROUP_CONNECTIONS = 25, 5  # devices per connection pool, its connections: 200 in all
CARE_TEAM = "Practitioner/care-team"
WRITE_P99_TARGET_MS = 1000.0  # a device posting once a second must not fall behind
ALERT_P99_TARGET_MS = 1000.0
COLUMNS = ("Remote monitoring", "taken", "p50", "p99", "count", "target", "met?")
UCUM = "http://unitsofmeasure.org"


@dataclass
class Row:
    label: str
    rate: str
    p50_ms: float
    p99_ms: float
    count: str
    target: str
    met: bool

    def cells(self) -> tuple[str, ...]:
        return (
            self.label,
            self.rate,
            "" if math.isnan(self.p50_ms) else f"{self.p50_ms:,.0f} ms",
            "" if math.isnan(self.p99_ms) else f"{self.p99_ms:,.0f} ms",
            self.count,
            self.target,
            ("yes" if self.met else "NO") if self.target else "",
        )


def render(rows: list[Row]) -> str:
    return table(COLUMNS, [row.cells() for row in rows])


@dataclass
class Tally:
    """What the devices and the care team's receiver saw."""

    latencies: list[float] = field(default_factory=list)  # s, from due to answered
    errors: Counter[str] = field(default_factory=Counter)  # by status or exception
    committed: dict[str, float] = field(default_factory=dict)  # out-of-band obs id -> 201 at
    seen: dict[str, float] = field(default_factory=dict)  # obs id -> its alert received at
    raised: int = 0  # alerts (Communications to the care team) the server raised
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0


def reading(patient: int, value: int, when: float) -> dict[str, Any]:
    taken = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/rpm-{patient}"},
        "device": {"reference": f"Device/hr-{patient}"},
        "effectiveDateTime": taken,
        "valueQuantity": {"value": value, "unit": "/min", "system": UCUM, "code": "/min"},
    }


async def setup(http: httpx.AsyncClient, base: str, devices: int) -> None:
    """The patients and the care team, in transaction Bundles of 500."""
    resources = [{"resourceType": "Practitioner", "id": "care-team"}] + [
        {"resourceType": "Patient", "id": f"rpm-{n}"} for n in range(devices)
    ]
    for start in range(0, len(resources), 500):
        entries = [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources[start : start + 500]
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        reply = await http.post(base, json=bundle)
        reply.raise_for_status()


async def device(
    http: httpx.AsyncClient, base: str, n: int, start: float, duration: int, tally: Tally
) -> None:
    rng = random.Random(n)
    offset = rng.random()  # devices spread over the second
    for tick in range(duration):
        due = start + offset + tick
        if time.monotonic() >= start + duration:
            break  # the run is over: a device that fell behind drops what it did not send
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        high = rng.randrange(OUT_OF_BAND_EVERY) == 0
        value = 150 if high else int(rng.gauss(75, 8))
        try:
            reply = await http.post(f"{base}/Observation", json=reading(n, value, time.time()))
        except httpx.HTTPError as error:
            tally.errors[type(error).__name__] += 1
            continue
        answered = time.monotonic()
        if reply.status_code != 201:
            tally.errors[str(reply.status_code)] += 1
            continue
        tally.latencies.append(answered - due)
        if high:
            tally.committed[reply.json()["id"]] = answered


async def subscribe(http: httpx.AsyncClient, base: str, endpoint: str) -> None:
    """The care team's rest-hook Subscription to its Communications, once it is active."""
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "remote-monitoring alerts for the care team",
        "criteria": f"Communication?recipient={CARE_TEAM}",
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"},
    }
    created = await http.post(f"{base}/Subscription", json=subscription)
    created.raise_for_status()
    url = f"{base}/Subscription/{created.json()['id']}"
    deadline = time.monotonic() + 30
    while (await http.get(url)).json()["status"] != "active":
        if time.monotonic() > deadline:
            raise RuntimeError("the care team's Subscription did not become active")
        await asyncio.sleep(0.1)


async def raised(http: httpx.AsyncClient, base: str) -> int:
    """How many alerts the server raised: its Communications to the care team."""
    params = {"recipient": CARE_TEAM, "_summary": "count"}
    reply = await http.get(f"{base}/Communication", params=params)
    reply.raise_for_status()
    return int(reply.json()["total"])


async def drain(http: httpx.AsyncClient, base: str, receiver: str, tally: Tally) -> None:
    """Wait (up to DRAIN_S) until the receiver has every alert raised, then take what it
    saw: the Observation each Communication is about -> when it arrived."""
    tally.raised = await raised(http, base)
    deadline = time.monotonic() + DRAIN_S
    while True:
        seen: dict[str, float] = (await http.get(f"{receiver}/seen")).json()
        if len(seen) >= tally.raised or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    tally.seen = {
        about.removeprefix("Observation/"): at
        for about, at in seen.items()
        if about.startswith("Observation/")
    }


async def run(base: str, receiver: str, devices: int, duration: int) -> Tally:
    """Devices share pools of GROUP devices each: one httpx pool with a thousand waiting
    requests spends more CPU scanning its queue than the server spends on the writes."""
    tally = Tally()
    timeout = httpx.Timeout(60.0, pool=None)  # a device waits for a pooled connection
    limits = httpx.Limits(max_connections=GROUP_CONNECTIONS)
    async with contextlib.AsyncExitStack() as stack:
        pools = [
            await stack.enter_async_context(httpx.AsyncClient(timeout=timeout, limits=limits))
            for _ in range(0, devices, GROUP)
        ]
        watcher = await stack.enter_async_context(httpx.AsyncClient(timeout=timeout))
        await setup(watcher, base, devices)
        await subscribe(watcher, base, f"{receiver}/care-team")
        start = time.monotonic() + 1.0
        await asyncio.gather(
            *(device(pools[n // GROUP], base, n, start, duration, tally) for n in range(devices))
        )
        await drain(watcher, base, receiver, tally)
    return tally


def _errors(errors: Counter[str]) -> str:
    if not errors:
        return "0 errors"
    return "errors " + ", ".join(f"{kind} x{n}" for kind, n in errors.most_common())


def _percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def rows(tally: Tally, devices: int, duration: int) -> list[Row]:
    writes = [s * 1000 for s in tally.latencies]
    alerts = [
        (tally.seen[obs] - at) * 1000 for obs, at in tally.committed.items() if obs in tally.seen
    ]
    write_p99 = _percentile(writes, 99)
    alert_p99 = _percentile(alerts, 99)
    return [
        Row(
            f"{devices} devices x 1 reading/s x {duration} s (offered {devices}/s): write",
            f"{len(writes) / duration:,.0f}/s",
            _percentile(writes, 50),
            write_p99,
            f"{len(writes):,} ok, {_errors(tally.errors)}",
            f"p99 < {WRITE_P99_TARGET_MS:,.0f} ms",
            not tally.errors and write_p99 < WRITE_P99_TARGET_MS,
        ),
        Row(
            "alert: 201 -> notification received (rest-hook Subscription)",
            "",
            _percentile(alerts, 50),
            alert_p99,
            f"{len(tally.seen):,} of {tally.raised:,} delivered",
            f"all, p99 < {ALERT_P99_TARGET_MS:,.0f} ms",
            bool(alerts) and len(tally.seen) == tally.raised and alert_p99 < ALERT_P99_TARGET_MS,
        ),
        Row(
            "CPU: server / load generator, per reading taken",
            f"{1000 * tally.server_cpu_s / max(len(writes), 1):.1f} / "
            f"{1000 * tally.client_cpu_s / max(len(writes), 1):.1f} ms",
            math.nan,
            math.nan,
            f"{tally.server_cpu_s:.0f} s / {tally.client_cpu_s:.0f} s",
            "",
            True,
        ),
    ]


def measure(scratch: Path, *, quick: bool = False) -> list[Row]:
    devices, duration = (QUICK_DEVICES, QUICK_DURATION_S) if quick else (DEVICES, DURATION_S)
    database, log = scratch / "monitoring.db", scratch / "monitoring-server.log"
    env = {"FHIR_MONITORING_RECIPIENTS": CARE_TEAM, "FHIR_SUBSCRIPTION_ALLOWED_HOSTS": "127.0.0.1"}
    receiver = HookReceiver()  # the care team's system
    try:
        with server.fhir_server(database, log, env=env) as running:
            cpu, own = running.cpu(), time.process_time()
            tally = asyncio.run(run(running.fhir_base, receiver.url, devices, duration))
            tally.server_cpu_s, tally.client_cpu_s = running.cpu() - cpu, time.process_time() - own
    finally:
        receiver.stop()
    return rows(tally, devices, duration)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.monitoring", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_DEVICES} devices for {QUICK_DURATION_S} s"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fhir-bench-monitoring-") as scratch:
        print(render(measure(Path(scratch), quick=args.quick)))


if __name__ == "__main__":
    main()
