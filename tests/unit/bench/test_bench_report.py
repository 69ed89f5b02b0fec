"""The benchmark table: aligned columns, targets checked, errors shown."""

from __future__ import annotations

from bench.ingest import IngestResult
from bench.report import BenchRun, render, to_json
from bench.server import Memory
from bench.wrk import LoadResult


def load(requests: int, statuses: dict[int, int] | None = None) -> LoadResult:
    statuses = statuses or {200: requests}
    return LoadResult(
        requests=requests,
        duration_s=2.0,
        p50_ms=1.5,
        p99_ms=12.25,
        statuses=statuses,
        non_2xx=sum(n for s, n in statuses.items() if not 200 <= s < 300),
    )


def bench_run() -> BenchRun:
    run = BenchRun(
        resources=5000,
        patients=450,
        bundles=47,
        seed=42,
        duration=2,
        connections=16,
        load_generator="wrk 4.1.0 (1 thread)",
        ingest=IngestResult(resources=5000, seconds=2.5, latencies_ms=[40.0, 60.0]),
        memory_after_load=Memory(rss_mb=120.0, hwm_mb=150.0),
    )
    run.loads = {
        "read": load(8000),
        "create": load(3000, {201: 2990, 500: 10}),
        "update": load(2400),
        "mixed": load(5000),
    }
    run.ceiling = load(12000)
    return run


def table_lines() -> list[str]:
    text = render(bench_run())
    return text.split("\n\n", 1)[1].splitlines()


def test_columns_line_up() -> None:
    header, rule, *body = table_lines()
    met_column = header.index("met?")
    assert rule.rindex(" ") == met_column - 1
    assert {line[met_column:] for line in body} <= {"yes", "NO", "—"}


def row(name: str) -> str:
    return next(line for line in table_lines() if line.startswith(name))


def test_targets() -> None:
    assert row("transaction ingest").endswith("yes")  # 2,000 resources/s
    assert " 67% " in row("read by id as % of bare ceiling")
    assert row("read by id as %").endswith("yes")
    assert row("server RSS after load").endswith("yes")


def test_errors_are_shown_and_fail_the_target() -> None:
    create = row("create Patient")
    assert "10 (500×10)" in create
    assert create.endswith("NO")


def test_json_has_the_targets() -> None:
    data = to_json(bench_run())
    met = {target["workload"]: target["met"] for target in data["targets"]}
    assert met["create Patient"] is False
    assert met["transaction ingest"] is True
    assert data["workloads"]["create"]["statuses"] == {"201": 2990, "500": 10}


def test_reads_beside_a_large_transaction_have_their_row() -> None:
    from bench.stall import StallResult

    run = bench_run()
    run.stall = StallResult(
        entries=10_000,
        transaction_status=200,
        transaction_seconds=4.0,
        latencies_ms=[2.0] * 98 + [90.0, 400.0],
    )
    line = next(
        li
        for li in render(run).splitlines()
        if li.startswith("read p99 while a 10,000-entry transaction runs")
    )
    assert "100 reads in 4.0 s" in line and "400.0 ms" in line and line.endswith("NO")
    assert to_json(run)["read_during_transaction"]["p99_ms"] == 400.0
    run.stall.latencies_ms = [2.0] * 200
    assert render(run).count("transaction runs") == 1 and stall_met(run)


def stall_met(run: BenchRun) -> bool:
    return next(
        t["met"] for t in to_json(run)["targets"] if t["workload"].startswith("read p99 while")
    )


def test_the_bearer_row_is_a_share_of_read_by_id() -> None:
    run = bench_run()
    run.bearer = load(7200)  # 90% of the 8,000 reads without authorization
    text = render(run)
    share = next(line for line in text.splitlines() if line.startswith("bearer read as %"))
    assert " 90% " in share and share.endswith("yes")
    run.bearer = load(6000)
    share = next(line for line in render(run).splitlines() if line.startswith("bearer read"))
    assert " 75% " in share and share.endswith("NO")
    assert to_json(run)["bearer_read"]["requests"] == 6000


def test_a_bearer_row_not_measured_says_why_and_fails() -> None:
    run = bench_run()
    run.bearer = "`fhir-server auth token`: No such command 'auth'."
    line = next(line for line in render(run).splitlines() if line.startswith("read by id, bearer"))
    assert "not measured: `fhir-server auth token`" in line and line.endswith("NO")


def test_cpu_cell_shows_the_figure_and_its_target() -> None:
    from bench.report import cpu_cell

    assert cpu_cell(None) == "—"
    assert cpu_cell(190.4) == "190 µs"
    assert cpu_cell(190.4, 120) == "190 µs (≤ 120: NO)"
    assert cpu_cell(99.0, 120) == "99 µs (≤ 120: yes)"


def test_server_cpu_per_request_from_the_process_tree() -> None:
    import os
    import time

    from bench.server import process_tree_cpu
    from bench.wrk import LoadResult

    before = process_tree_cpu(os.getpid())
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    used = process_tree_cpu(os.getpid()) - before
    assert used >= 0.03  # clock ticks are 10 ms
    result = LoadResult(requests=1000, duration_s=1.0, p50_ms=1.0, p99_ms=2.0, server_cpu_s=0.19)
    assert result.cpu_per_request_us is not None
    assert round(result.cpu_per_request_us) == 190
