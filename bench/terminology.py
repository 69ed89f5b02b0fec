"""The terminology figures of `make bench`: start-up with the R4 content, $validate-code,
$expand, and a 10,000-concept SNOMED-style code system (import, upload, $subsumes).

Each figure is measured over real HTTP against `fhir-server serve` on a scratch database,
one request at a time (latency, not throughput), after a warm-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from bench import server
from bench.report import ms, table
from terminology.importers.snomed import import_snomed
from tests.support.snomed_fixture import write_snomed_fixture

GENDER = "http://hl7.org/fhir/administrative-gender"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
SERVICE_TYPE_VS = "http://hl7.org/fhir/ValueSet/service-type"  # 596 codes, all of one system
SNOMED = "http://snomed.info/sct"
FIXTURE_CONCEPTS = 10_000
SAMPLES = 300

VALIDATE_TARGET_MS = 2.0
EXPAND_TARGET_MS = 20.0
SUBSUMES_TARGET_MS = 1.0
FIXTURE_LOAD_TARGET_S = 5.0
STARTUP_TARGET_S = 3.0


COLUMNS = ("terminology", "p50", "p95 / time", "target", "met?")


@dataclass
class Row:
    label: str
    p50: str
    measured: str
    target: str
    met: bool
    value: float
    cpu: str = "—"  # server CPU per request, where measured

    def cells(self) -> tuple[str, ...]:
        return (self.label, self.p50, self.measured, self.target, "yes" if self.met else "NO")


def render(rows: list[Row]) -> str:
    return table(COLUMNS, [row.cells() for row in rows])


@dataclass
class Latency:
    p50: float
    p95: float


def sample(call: Callable[[], httpx.Response], samples: int = SAMPLES) -> Latency:
    for _ in range(20):  # warm-up
        _ok(call())
    timings = []
    for _ in range(samples):
        start = time.perf_counter()
        _ok(call())
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    return Latency(
        timings[len(timings) // 2], timings[min(len(timings) - 1, len(timings) * 95 // 100)]
    )


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise RuntimeError(
            f"{response.request.url} answered {response.status_code}: {response.text[:300]}"
        )
    return response


def startup_seconds(scratch: Path) -> float:
    """From process start to the first 200 from /metadata, terminology loaded."""
    start = time.perf_counter()
    with server.fhir_server(scratch / "startup.db", scratch / "startup.log"):
        return time.perf_counter() - start


def measure(scratch: Path) -> list[Row]:
    rows = []
    started = startup_seconds(scratch)
    rows.append(_time_row("server start-up, R4 terminology loaded", started, STARTUP_TARGET_S))
    with (
        server.fhir_server(scratch / "terminology.db", scratch / "terminology.log") as fhir,
        httpx.Client(base_url=fhir.fhir_base, timeout=60) as client,
    ):
        validate = sample(
            lambda: client.get(
                "/ValueSet/$validate-code",
                params={"url": GENDER_VS, "system": GENDER, "code": "female"},
            )
        )
        rows.append(_latency_row("ValueSet/$validate-code", validate, VALIDATE_TARGET_MS))
        expand = sample(
            lambda: client.get("/ValueSet/$expand", params={"url": SERVICE_TYPE_VS}), samples=100
        )
        rows.append(_latency_row("ValueSet/$expand, 596 codes", expand, EXPAND_TARGET_MS))
        rows.extend(_snomed_rows(client, scratch))
    return rows


def _snomed_rows(client: httpx.Client, scratch: Path) -> list[Row]:
    folder = scratch / "snomed"
    codes = write_snomed_fixture(folder, FIXTURE_CONCEPTS)
    start = time.perf_counter()
    imported = import_snomed(folder)
    body = orjson.dumps({**imported.code_system, "id": "snomed-fixture"})
    _ok_created(
        client.put(
            "/CodeSystem/snomed-fixture",
            content=body,
            headers={"Content-Type": "application/fhir+json"},
        )
    )
    loaded = time.perf_counter() - start
    row = _time_row(
        f"SNOMED-style fixture, {FIXTURE_CONCEPTS:,} concepts: import + store",
        loaded,
        FIXTURE_LOAD_TARGET_S,
    )
    root, leaf = codes[0], codes[-1]
    subsumes = sample(
        lambda: client.get(
            "/CodeSystem/$subsumes", params={"system": SNOMED, "codeA": root, "codeB": leaf}
        )
    )
    return [
        row,
        _latency_row(
            "CodeSystem/$subsumes on the fixture (HTTP round trip)", subsumes, SUBSUMES_TARGET_MS
        ),
    ]


def _ok_created(response: httpx.Response) -> None:
    if response.status_code not in (200, 201):
        raise RuntimeError(
            f"storing the fixture answered {response.status_code}: {response.text[:300]}"
        )


def _latency_row(label: str, latency: Latency, target_ms: float) -> Row:
    return Row(
        label,
        ms(latency.p50),
        ms(latency.p95),
        f"p95 ≤ {target_ms:g} ms",
        latency.p95 <= target_ms,
        latency.p95,
    )


def _time_row(label: str, seconds: float, target_s: float) -> Row:
    return Row(label, "—", f"{seconds:.2f} s", f"≤ {target_s:g} s", seconds <= target_s, seconds)
