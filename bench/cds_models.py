"""The CDS model figures of `make bench`: single-row inference latency (p50, p99) of each
shipped model package, in process, through the same `OnnxModel.predict` the services call
(float32 row, the onnxruntime session built once, one thread), on the held-out rows of its
training data in turn; and the whole `evaluate` of one service (inputs read from a prefetch,
the model, the card), for scale. Beside wall-clock time, the thread's CPU time per call
(p99 CPU): on a busy machine the wall p99 is the scheduler's, the CPU p99 the model's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from bench.report import table
from cds_hooks.models import SHIPPED, ModelService, train_breast_cancer, train_diabetes
from cds_hooks.service import HookCall

P99_TARGET_MS = 1.0
SAMPLES = 5_000
WARM_UP = 200
COLUMNS = ("CDS model, one row", "p50", "p99", "p99 CPU", "target", "met?")


@dataclass
class Row:
    label: str
    p50_ms: float
    p99_ms: float
    cpu_p99_ms: float
    target_ms: float | None

    @property
    def met(self) -> bool | None:
        return None if self.target_ms is None else self.p99_ms < self.target_ms

    def cells(self) -> tuple[str, ...]:
        target = "—" if self.target_ms is None else f"p99 < {self.target_ms:g} ms"
        met = "—" if self.met is None else ("yes" if self.met else "NO")
        times = (f"{t:.3f} ms" for t in (self.p50_ms, self.p99_ms, self.cpu_p99_ms))
        return (self.label, *times, target, met)


def _timed(call: Callable[[int], object], samples: int = SAMPLES) -> tuple[float, float, float]:
    """p50 and p99 of wall-clock time and p99 of CPU time, in ms."""
    for i in range(WARM_UP):
        call(i)
    wall, cpu = [], []
    for i in range(samples):
        start, start_cpu = time.perf_counter(), time.thread_time()
        call(i)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    wall.sort()
    cpu.sort()
    p99 = min(samples - 1, samples * 99 // 100)
    return wall[samples // 2], wall[p99], cpu[p99]


def _held_out() -> dict[str, np.ndarray]:
    fna_rows = train_breast_cancer.data()[1]
    return {
        "diabetes-progression": train_diabetes.data()[1],
        "breast-cancer-fna-svm": fna_rows,
        "breast-cancer-fna-rf": fna_rows,
    }


def _diabetes_call(row: np.ndarray) -> HookCall:
    """The first held-out diabetes row as a resolved prefetch."""
    service = ModelService(SHIPPED / "diabetes-progression")
    names = [i.name for i in service.manifest.inputs]
    values = dict(zip(names, (float(v) for v in row), strict=True))
    values["ltg"] = math.exp(values["ltg"])
    prefetch: dict[str, dict[str, object] | None] = {
        "patient": {
            "resourceType": "Patient",
            "birthDate": f"{datetime.now(UTC).year - int(values['age']) - 1}-12-31",
            "gender": "female" if values["sex"] == 1 else "male",
        }
    }
    for item in service.manifest.inputs[2:]:
        system, _, code = (item.code or "").partition("|")
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": system, "code": code}]},
            "effectiveDateTime": datetime.now(UTC).isoformat(),
            "valueQuantity": {"value": values[item.name], "unit": item.unit},
        }
        prefetch[item.name] = {"resourceType": "Bundle", "entry": [{"resource": observation}]}
    return HookCall("patient-view", "bench", {"patientId": "p"}, prefetch)


def measure() -> list[Row]:
    rows = []
    for package, held_out in _held_out().items():
        model = ModelService(SHIPPED / package).model
        features = [[float(v) for v in row] for row in held_out]
        times = _timed(lambda i: model.predict(features[i % len(features)]))  # noqa: B023
        rows.append(Row(f"inference, {package}", *times, P99_TARGET_MS))
    service = ModelService(SHIPPED / "diabetes-progression")
    call = _diabetes_call(_held_out()["diabetes-progression"][0])
    times = _timed(lambda _: service.evaluate(call), 2_000)
    rows.append(Row("evaluate (inputs, model, card), diabetes-progression", *times, None))
    return rows


def render(rows: list[Row]) -> str:
    return table(COLUMNS, [row.cells() for row in rows])


if __name__ == "__main__":
    print(render(measure()))
