"""The one table `make bench` prints, the targets it checks, and the same data as JSON."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.ingest import IngestResult
from bench.server import Memory
from bench.stall import P99_TARGET_MS, StallResult
from bench.wrk import LoadResult

RESULTS_DIR = Path(__file__).parent / "results"
COLUMNS = ("workload", "throughput", "p50", "p99", "errors", "server CPU/req", "target", "met?")
# Server CPU per request (user + system of every server process / requests): unlike
# throughput it holds across machines. Targets by workload name.
CPU_TARGETS_US = {"read": 120.0, "create": 600.0}
# Throughput with 2 worker processes over 1, on a 2-core machine that also runs the load
# generator. Targets by workload name.
SCALING_TARGETS = {"read": 1.4}

READ_SHARE_TARGET = 0.50  # read by id, as a share of the bare ceiling
BEARER_SHARE_TARGET = 0.85  # read by id with a bearer token, as a share of without
CREATE_TARGET = 1_000.0  # Patients/s
INGEST_TARGET = 1_000.0  # resources/s through transaction Bundles
RSS_TARGET_MB = 300.0  # after loading RSS_TARGET_RESOURCES
RSS_TARGET_RESOURCES = 100_000

LABELS = {
    "read": "read by id",
    "create": "create Patient",
    "update": "update Patient",
    "mixed": "mixed CRUD 70/15/10/5",
}


@dataclass
class BenchRun:
    """Everything one run measured; `loads` is keyed by workload name (see bench/lua)."""

    resources: int
    patients: int
    bundles: int
    seed: int
    duration: int
    connections: int
    load_generator: str
    ingest: IngestResult
    memory_after_load: Memory
    memory_at_end: Memory | None = None
    loads: dict[str, LoadResult] = field(default_factory=dict)
    ceiling: LoadResult | None = None
    stall: StallResult | None = None
    bearer: LoadResult | str | None = None  # read by id with a token, or why not measured
    two_workers: dict[str, LoadResult] = field(default_factory=dict)  # the loads, 2 workers
    started: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Row:
    workload: str
    throughput: str
    p50: str = "—"
    p99: str = "—"
    errors: str = "—"
    target: str = "—"
    met: bool | None = None
    value: float | None = None
    cpu: str = "—"

    def cells(self) -> tuple[str, ...]:
        met = "—" if self.met is None else ("yes" if self.met else "NO")
        return (
            self.workload,
            self.throughput,
            self.p50,
            self.p99,
            self.errors,
            self.cpu,
            self.target,
            met,
        )


def cpu_cell(per_request_us: float | None, target_us: float | None = None) -> str:
    """`190 µs`, with its target when there is one: `190 µs (≤ 120: NO)`."""
    if per_request_us is None:
        return "—"
    text = f"{per_request_us:,.0f} µs"
    if target_us is None:
        return text
    return f"{text} (≤ {target_us:,.0f}: {'yes' if per_request_us <= target_us else 'NO'})"


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def load_row(
    label: str,
    result: LoadResult,
    unit: str = "req/s",
    target: str = "—",
    minimum: float | None = None,
    cpu_target_us: float | None = None,
) -> Row:
    met = None if minimum is None else result.throughput >= minimum and result.errors == 0
    row = Row(
        label,
        f"{result.throughput:,.0f} {unit}",
        ms(result.p50_ms),
        ms(result.p99_ms),
        result.error_detail(),
        target,
        met,
        result.throughput,
    )
    row.cpu = cpu_cell(result.cpu_per_request_us, cpu_target_us)
    return row


def ingest_row(ingest: IngestResult) -> Row:
    ordered = sorted(ingest.latencies_ms)
    p50 = ordered[len(ordered) // 2] if ordered else None
    p99 = ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)] if ordered else None
    return Row(
        "transaction ingest",
        f"{ingest.throughput:,.0f} resources/s",
        f"{ms(p50)}/bundle",
        f"{ms(p99)}/bundle",
        ingest.error_detail(),
        f"≥ {INGEST_TARGET:,.0f} resources/s",
        ingest.throughput >= INGEST_TARGET and ingest.errors == 0,
        ingest.throughput,
    )


def ceiling_rows(run: BenchRun) -> list[Row]:
    read, ceiling = run.loads.get("read"), run.ceiling
    if ceiling is None:
        return [Row("read by id, bare ceiling", "not measured")]
    rows = [load_row("read by id, bare ceiling", ceiling)]
    if read is not None and ceiling.throughput:
        share = read.throughput / ceiling.throughput
        rows.append(
            Row(
                "read by id as % of bare ceiling",
                f"{share:.0%}",
                target=f"≥ {READ_SHARE_TARGET:.0%}",
                met=share >= READ_SHARE_TARGET and read.errors == 0,
                value=share,
            )
        )
    return rows


def stall_row(stall: StallResult) -> Row:
    """Reads on another connection while one large transaction runs."""
    p99 = stall.percentile(0.99)
    errors = (
        str(stall.errors)
        if stall.transaction_status == 200
        else (f"{stall.errors} (transaction {stall.transaction_status})")
    )
    return Row(
        f"read p99 while a {stall.entries:,}-entry transaction runs",
        f"{len(stall.latencies_ms):,} reads in {stall.transaction_seconds:.1f} s",
        ms(stall.percentile(0.5)),
        ms(p99),
        errors,
        f"p99 ≤ {P99_TARGET_MS:.0f} ms",
        stall.met,
        p99,
    )


def bearer_rows(run: BenchRun) -> list[Row]:
    """Read by id with a bearer token (authorization on), and its share of the same reads
    without authorization: the token check must stay cheap (a cached key, no database)."""
    read, bearer = run.loads.get("read"), run.bearer
    if bearer is None:
        return []
    if isinstance(bearer, str):
        return [
            Row(
                "read by id, bearer token",
                f"not measured: {bearer}",
                target=f"≥ {BEARER_SHARE_TARGET:.0%} of read by id",
                met=False,
            )
        ]
    rows = [load_row("read by id, bearer token", bearer)]
    if read is not None and read.throughput:
        share = bearer.throughput / read.throughput
        rows.append(
            Row(
                "bearer read as % of read by id",
                f"{share:.0%}",
                target=f"≥ {BEARER_SHARE_TARGET:.0%}",
                met=share >= BEARER_SHARE_TARGET and bearer.errors == 0,
                value=share,
            )
        )
    return rows


def memory_row(run: BenchRun) -> Row:
    memory = run.memory_after_load
    scale = "" if run.resources >= RSS_TARGET_RESOURCES else f"; {run.resources:,} loaded"
    return Row(
        "server RSS after load",
        f"{memory.rss_mb:,.0f} MB (peak {memory.hwm_mb:,.0f} MB)",
        target=f"≤ {RSS_TARGET_MB:,.0f} MB at {RSS_TARGET_RESOURCES // 1000}k{scale}",
        met=memory.rss_mb <= RSS_TARGET_MB,
        value=memory.rss_mb,
    )


def rows(run: BenchRun) -> list[Row]:
    table = [ingest_row(run.ingest)]
    for name, result in run.loads.items():
        if name == "create":
            table.append(
                load_row(
                    LABELS[name],
                    result,
                    "Patients/s",
                    f"≥ {CREATE_TARGET:,.0f} Patients/s",
                    CREATE_TARGET,
                    CPU_TARGETS_US.get(name),
                )
            )
        else:
            table.append(
                load_row(LABELS.get(name, name), result, cpu_target_us=CPU_TARGETS_US.get(name))
            )
    if run.stall is not None:
        table.append(stall_row(run.stall))
    table += worker_rows(run)
    return table + ceiling_rows(run) + bearer_rows(run) + [memory_row(run)]


def worker_rows(run: BenchRun) -> list[Row]:
    """Each workload again with 2 worker processes, and its throughput over 1 worker's."""
    table = []
    for name, result in run.two_workers.items():
        label = LABELS.get(name, name)
        table.append(load_row(f"{label}, 2 workers", result, cpu_target_us=None))
        one = run.loads.get(name)
        if one is None or not one.throughput:
            continue
        ratio, minimum = result.throughput / one.throughput, SCALING_TARGETS.get(name)
        table.append(
            Row(
                f"{label}: 2 workers / 1 worker",
                f"{ratio:.2f}×",
                target="—" if minimum is None else f"≥ {minimum:.1f}×",
                met=None if minimum is None else ratio >= minimum and result.errors == 0,
                value=ratio,
            )
        )
    return table


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(run: BenchRun) -> list[str]:
    return [
        f"FHIR server benchmark — {run.started:%Y-%m-%d %H:%M} UTC",
        f"machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}",
        f"dataset: {run.resources:,} resources ({run.patients:,} patients) in {run.bundles:,} "
        f"transaction bundles, seed {run.seed}",
        f"load: {run.load_generator}, {run.connections} connections, {run.duration} s per "
        "workload; errors = non-2xx answers + socket errors",
    ]


def render(run: BenchRun) -> str:
    """Header lines, then one table with aligned columns."""
    return "\n".join([*header(run), "", table(COLUMNS, [row.cells() for row in rows(run)])])


def table(columns: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    """Aligned columns under a header and a rule."""
    widths = [max(len(line[i]) for line in [columns, *body]) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [columns, *body]
    ]
    rule = "  ".join("-" * width for width in widths)
    return "\n".join([lines[0], rule, *lines[1:]])


def load_json(result: LoadResult) -> dict[str, Any]:
    return {
        "throughput_per_s": round(result.throughput, 1),
        "requests": result.requests,
        "duration_s": round(result.duration_s, 3),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "socket_errors": result.socket_errors,
        "server_cpu_us_per_request": result.cpu_per_request_us,
    }


def stall_json(stall: StallResult) -> dict[str, Any]:
    return {
        "entries": stall.entries,
        "transaction_status": stall.transaction_status,
        "transaction_s": round(stall.transaction_seconds, 3),
        "reads": len(stall.latencies_ms),
        "p50_ms": stall.percentile(0.5),
        "p99_ms": stall.percentile(0.99),
        "errors": stall.errors,
    }


def to_json(run: BenchRun) -> dict[str, Any]:
    return {
        "date": run.started.isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "python": platform.python_version(),
        "load_generator": run.load_generator,
        "settings": {"duration_s": run.duration, "connections": run.connections},
        "dataset": {
            "resources": run.resources,
            "patients": run.patients,
            "bundles": run.bundles,
            "seed": run.seed,
        },
        "transaction_ingest": {
            "resources_per_s": round(run.ingest.throughput, 1),
            "resources": run.ingest.resources,
            "seconds": round(run.ingest.seconds, 3),
            "failed_bundles": {str(k): v for k, v in run.ingest.failed_bundles.items()},
            "first_failure": run.ingest.first_failure,
        },
        "workloads": {name: load_json(result) for name, result in run.loads.items()},
        "workloads_2_workers": {
            name: load_json(result) for name, result in run.two_workers.items()
        },
        "bare_ceiling_read": load_json(run.ceiling) if run.ceiling else None,
        "read_during_transaction": stall_json(run.stall) if run.stall else None,
        "bearer_read": (
            load_json(run.bearer)
            if isinstance(run.bearer, LoadResult)
            else {"not_measured": run.bearer}
            if run.bearer
            else None
        ),
        "memory_mb": {
            "rss_after_load": round(run.memory_after_load.rss_mb, 1),
            "peak_after_load": round(run.memory_after_load.hwm_mb, 1),
            "peak_at_end": round(run.memory_at_end.hwm_mb, 1) if run.memory_at_end else None,
        },
        "targets": [
            {"workload": row.workload, "target": row.target, "value": row.value, "met": row.met}
            for row in rows(run)
            if row.met is not None
        ],
        "table": render(run),
    }
