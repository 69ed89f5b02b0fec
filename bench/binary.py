"""The Binary figures of `make bench`: a 100 MB file up and down as raw bytes.

Against `fhir-server serve` on a scratch SQLite database: `POST /fhir/Binary` with
`Content-Type: model/stl` streams the file into the blob store, `GET` with `Accept:
model/stl` streams it back. Reported: MB/s each way, the server's CPU seconds for the
transfer, and its resident memory before and at its peak (it must stay flat: the file is
never held whole in the server).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import server
from bench.report import table

SIZE_MB = 100
MB = 1024 * 1024
THROUGHPUT_TARGET = 50.0  # MB/s each way
RSS_GROWTH_TARGET_MB = 50.0  # peak RSS over the RSS before the upload
COLUMNS = ("Binary, 100 MB raw", "throughput", "server CPU", "server RSS", "target", "met?")


@dataclass
class Row:
    label: str
    mb_per_s: float
    cpu_s: float
    rss: str
    target: str
    met: bool

    def cells(self) -> tuple[str, ...]:
        return (
            self.label,
            f"{self.mb_per_s:,.0f} MB/s",
            f"{self.cpu_s:.2f} s",
            self.rss,
            self.target,
            "yes" if self.met else "NO",
        )


def render(rows: list[Row]) -> str:
    return table(COLUMNS, [row.cells() for row in rows])


def _blocks(total: int) -> Iterator[bytes]:
    for n in range(0, total, MB):
        yield (hashlib.sha256(str(n).encode()).digest() * (MB // 32))[: min(MB, total - n)]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(scratch: Path, size_mb: int = SIZE_MB) -> list[Row]:
    total = size_mb * MB
    with server.fhir_server(scratch / "binary.db", scratch / "binary-server.log") as running:
        pid = running.process.pid
        base = running.fhir_base
        with httpx.Client(timeout=600) as client:
            client.post(f"{base}/Binary", content=b"warm", headers={"Content-Type": "model/stl"})
            before = server.process_tree_memory(pid).rss_mb
            cpu = _cpu_seconds(pid)
            start = time.perf_counter()
            created = client.post(
                f"{base}/Binary", content=_blocks(total), headers={"Content-Type": "model/stl"}
            )
            up = time.perf_counter() - start
            up_cpu = _cpu_seconds(pid) - cpu
            if created.status_code != 201:
                raise RuntimeError(f"Binary upload answered {created.status_code}")
            location = created.headers["Location"].split("/_history")[0]
            cpu, start, size = _cpu_seconds(pid), time.perf_counter(), 0
            with client.stream("GET", location, headers={"Accept": "model/stl"}) as download:
                for block in download.iter_bytes():
                    size += len(block)
            down = time.perf_counter() - start
            down_cpu = _cpu_seconds(pid) - cpu
        memory = server.process_tree_memory(pid)
    if size != total:
        raise RuntimeError(f"Binary download gave {size} bytes of {total}")
    growth = memory.hwm_mb - before
    rss = f"{before:,.0f} MB, peak {memory.hwm_mb:,.0f} MB"
    flat = growth <= RSS_GROWTH_TARGET_MB
    target = f"≥ {THROUGHPUT_TARGET:.0f} MB/s, peak ≤ +{RSS_GROWTH_TARGET_MB:.0f} MB"
    rows = []
    for label, seconds, cpu_s in (
        ("upload (POST Binary)", up, up_cpu),
        ("download (GET, Accept: model/stl)", down, down_cpu),
    ):
        rate = size_mb / seconds
        rows.append(Row(label, rate, cpu_s, rss, target, flat and rate >= THROUGHPUT_TARGET))
    return rows
