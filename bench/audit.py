"""Reads by id with the audit trail on and off, on the same database and load.

Each read is audited (added to its flush window's journal entry after its response,
written once a second, and merged into AuditEvents by the index pass), so the figure is
what auditing costs a read-heavy server: the target is at least 90% of the throughput with
FHIR_AUDIT=off. Each run lasts one index interval (`RUN_SECONDS`, the default of
FHIR_AUDIT_INDEX_SECONDS; a `--quick` run is shorter, and pays more per read) and ends
with a search of AuditEvents, which stores the run's journal first (as an auditor's search
does): that index pass is counted as part of the run (its time added to the run's length,
its CPU to the run's), whether or not the timer's own pass fell within it.
Authorization is off in both runs, as in the main read row, so the difference is the
audit trail alone. A last row measures the trail's own work per read in process, which
the load generator and other work on the machine do not move.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench import server
from bench.report import table
from bench.terminology import Row
from bench.wrk import LoadResult
from fhir_server.audit.events import EventBuilder
from fhir_server.audit.trail import AuditTrail
from fhir_server.context import ANONYMOUS
from fhir_server.interactions.service import FhirService
from fhir_server.search.extract import Indexer
from fhir_server.search.registry import load_registry
from fhir_server.storage.base import StoredResource
from fhir_server.storage.sqlite import SQLiteStorage

TARGET_RATIO = 0.90
ROUNDS = 2
RUN_SECONDS = 60  # each measured run: the read journal's default index interval
COLUMNS = ("audit trail", "req/s", "server CPU per read", "target", "met?")

Loader = Callable[[str, str, Path, str], LoadResult]  # base, workload, data, label


def measure(run: Loader, scratch: Path) -> list[Row]:
    """Read throughput with FHIR_AUDIT=off, then on (the database `measure_server` loaded),
    ROUNDS times in turn; each mode's best round counts (on a shared machine the other
    work moves single runs by more than the audit trail costs). Each run starts with an
    empty read journal and ends with its index pass, counted in the run (see the module
    docstring; with audit off the same search finds nothing to store)."""
    found: dict[str, LoadResult] = {}
    for turn in range(ROUNDS):
        for mode in ("off", "on"):
            log = scratch / f"audit-{mode}-{turn}.log"
            with server.fhir_server(scratch / "bench.db", log, env={"FHIR_AUDIT": mode}) as fhir:
                run(fhir.base_url, "read", scratch / "data", "warm-up")
                index_journal(fhir.fhir_base)  # the warm-up's reads: not this run's
                before = fhir.cpu()
                result = run(fhir.base_url, "read", scratch / "data", f"read by id, audit {mode}")
                result.duration_s += index_journal(fhir.fhir_base)
                result.server_cpu_s = fhir.cpu() - before
            if mode not in found or result.throughput > found[mode].throughput:
                found[mode] = result
    off, on = found["off"], found["on"]
    ratio = on.throughput / off.throughput if off.throughput else 0.0
    work = asyncio.run(work_per_read(scratch / "audit-work.db"))
    return [
        _row("read by id, audit off", off, "", True),
        _row(
            "read by id, audit on",
            on,
            f">= {TARGET_RATIO:.0%} of off ({ratio:.0%})",
            ratio >= TARGET_RATIO and not on.errors,
        ),
        Row(
            f"audit work per read, in process ({WORK_READS:,} reads)",
            "-",
            f"{work:,.0f} µs",
            "",
            True,
            work,
        ),
    ]


def index_journal(fhir_base: str) -> float:
    """Seconds a search of AuditEvents took: with audit on, it stores the read journal
    first (`AuditTrail.catch_up`)."""
    started = time.perf_counter()
    request = urllib.request.Request(f"{fhir_base}/AuditEvent?_summary=count")
    with urllib.request.urlopen(request, timeout=600) as response:
        response.read()
    return time.perf_counter() - started


WORK_READS = 5_000


async def work_per_read(db: Path) -> float:
    """CPU µs per read of what the audit trail does for it, measured in this process alone
    (not moved by the load generator or other work): recording the reads of one client
    (`record_read`), then building, indexing, storing and chaining their events."""
    registry = load_registry()
    storage = SQLiteStorage(str(db))
    await storage.open()
    try:
        service = FhirService(storage, registry=registry)
        trail = AuditTrail(service, EventBuilder(registry, Indexer(registry), "http://bench"))
        when = "2026-01-01T00:00:00.000000Z"
        found = [
            StoredResource("Patient", f"p{n}", 1, when, False, b'{"resourceType":"Patient"}')
            for n in range(WORK_READS)
        ]
        start = time.process_time()
        for rec in found:
            trail.record_read(ANONYMOUS, "Patient", rec.id, 200, "127.0.0.1", rec)
        await trail.close()
        return (time.process_time() - start) / WORK_READS * 1e6
    finally:
        await storage.close()


def _row(label: str, result: LoadResult, target: str, met: bool) -> Row:
    cpu = result.cpu_per_request_us
    return Row(
        label,
        f"{result.throughput:,.0f}",
        f"{cpu:,.0f} µs" if cpu is not None else "n/a",
        target,
        met,
        result.throughput,
    )


def render(rows: list[Row]) -> str:
    return table(COLUMNS, [row.cells() for row in rows])
