"""The orthotics geometry figures of `make bench`: a scan in, printable insoles out.

In process (the geometry is pure functions; the HTTP order flow has its own rows): a synthetic
scan of a parametric foot, with noise, holes, a reversed patch, the floor and a stray shell,
exported as binary STL, then `design_from_scan` for one insole (parse, decimate, clean, align,
build, all gates, STL + 3MF export, preview PNG). Wall time (median of the runs after a
warm-up) and the process CPU time per design. `python -m bench.orthotics` prints these rows
alone.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass

from adapters.orthotics.design import (
    FootMeasurements,
    Prescription,
    PrintLimits,
    design_from_measurements,
    design_from_scan,
)
from adapters.orthotics.synthetic import ScanDefects, noisy_scan, parametric_foot
from bench.report import table

COLUMNS = ("orthotics geometry", "input", "wall p50", "CPU", "target", "met?")
RX = Prescription(("right",), 20.0, 15.0, 4.0, -2.0, "sulcus", 3.0, "mjf-tpu")
CASES = (  # label, scan faces (0: measurements only), runs, target seconds
    ("design + gates + export, 50k-face scan", 50_000, 5, 0.5),
    ("design + gates + export, 1M-face scan", 1_000_000, 3, 5.0),
    ("design + gates + export, measurements", 0, 5, 0.5),
)


@dataclass
class Row:
    label: str
    input: str
    wall_s: float
    cpu_s: float
    target_s: float

    @property
    def met(self) -> bool:
        return self.wall_s <= self.target_s

    def cells(self) -> tuple[str, ...]:
        return (
            self.label,
            self.input,
            f"{self.wall_s:.2f} s",
            f"{self.cpu_s:.2f} s",
            f"<= {self.target_s:g} s",
            "yes" if self.met else "NO",
        )


def render(rows: list[Row]) -> str:
    return table(COLUMNS, [row.cells() for row in rows])


def measure(quick: bool = False) -> list[Row]:
    rows = []
    for label, faces, runs, target in CASES:
        if quick and faces > 100_000:
            continue
        rows.append(_measure(label, faces, 2 if quick else runs, target))
    return rows


def _measure(label: str, faces: int, runs: int, target: float) -> Row:
    if faces:
        scan = noisy_scan(parametric_foot(262.0, 100.0, 64.0, 18.0), ScanDefects(faces=faces))
        data = scan.export(file_type="stl")
        assert isinstance(data, bytes)
        size = f"{len(scan.faces):,} faces, {len(data) / 1e6:.0f} MB STL"

        def design() -> object:
            return design_from_scan({"right": data}, "model/stl", RX, PrintLimits())
    else:
        size = "4 measurements"

        def design() -> object:
            m = FootMeasurements(262.0, 100.0, 64.0, 18.0)
            return design_from_measurements(m, RX, PrintLimits())

    design()  # warm-up: imports, font cache, ray engine
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        design()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Row(label, size, statistics.median(walls), statistics.median(cpus), target)


if __name__ == "__main__":
    print(render(measure(quick="--quick" in sys.argv)))
