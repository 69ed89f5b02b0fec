"""Reads by id with the audit trail on and off, on the same database and load.

Each read is audited (queued on the request path; the reads of one flush window by one
agent coalesced into one AuditEvent with an entity per resource read, written in batches
after the responses by the same process), so the figure is what auditing costs a
read-heavy server:
the target is at least 90% of the throughput with FHIR_AUDIT=off. Authorization is off in
both runs, as in the main read row, so the difference is the audit trail alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench import server
from bench.report import table
from bench.terminology import Row
from bench.wrk import LoadResult

TARGET_RATIO = 0.90
COLUMNS = ("audit trail", "req/s", "server CPU per read", "target", "met?")

Loader = Callable[[str, str, Path, str], LoadResult]  # base, workload, data, label


def measure(run: Loader, scratch: Path) -> list[Row]:
    """Read throughput with FHIR_AUDIT=off, then on (the database `measure_server` loaded)."""
    found: dict[str, LoadResult] = {}
    for mode in ("off", "on"):
        log = scratch / f"audit-{mode}.log"
        with server.fhir_server(scratch / "bench.db", log, extra={"FHIR_AUDIT": mode}) as fhir:
            run(fhir.base_url, "read", scratch / "data", "warm-up")
            before = fhir.cpu()
            result = run(fhir.base_url, "read", scratch / "data", f"read by id, audit {mode}")
            result.server_cpu_s = fhir.cpu() - before
            found[mode] = result
    off, on = found["off"], found["on"]
    ratio = on.throughput / off.throughput if off.throughput else 0.0
    return [
        _row("read by id, audit off", off, "", True),
        _row(
            "read by id, audit on",
            on,
            f">= {TARGET_RATIO:.0%} of off ({ratio:.0%})",
            ratio >= TARGET_RATIO and not on.errors,
        ),
    ]


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
