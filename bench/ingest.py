"""Load transaction Bundles over HTTP and measure resources per second.

A few threads, each with its own keep-alive connection, POST pre-serialized Bundles to the
FHIR base; the wall time from the first send to the last answer is what counts. The ids
the server gives the Patients (from each entry's `response.location`) are kept for the
read and update workloads.
"""

from __future__ import annotations

import http.client
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from tqdm import tqdm

FHIR_JSON = "application/fhir+json"


@dataclass
class PreparedBundle:
    body: bytes
    resources: int


@dataclass
class IngestResult:
    resources: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    failed_bundles: dict[int, int] = field(default_factory=dict)
    first_failure: str = ""
    patient_ids: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return sum(self.failed_bundles.values())

    def error_detail(self) -> str:
        if not self.errors:
            return "0"
        parts = ", ".join(f"{status}×{n}" for status, n in sorted(self.failed_bundles.items()))
        return f"{self.errors} bundles ({parts})"


def ingest(fhir_base: str, bundles: list[PreparedBundle], concurrency: int) -> IngestResult:
    """POSTs every bundle to `fhir_base`; returns throughput of the bundles that succeeded."""
    work: queue.Queue[PreparedBundle | None] = queue.Queue()
    for bundle in bundles:
        work.put(bundle)
    result = IngestResult()
    lock = threading.Lock()
    total = sum(bundle.resources for bundle in bundles)
    with tqdm(total=total, desc="transaction ingest", unit="res", unit_scale=True) as bar:
        workers = [
            threading.Thread(target=post_all, args=(fhir_base, work, result, lock, bar))
            for _ in range(concurrency)
        ]
        started = time.perf_counter()
        for worker in workers:
            work.put(None)
            worker.start()
        for worker in workers:
            worker.join()
        result.seconds = time.perf_counter() - started
    return result


def post_all(
    fhir_base: str,
    work: queue.Queue[PreparedBundle | None],
    result: IngestResult,
    lock: threading.Lock,
    bar: tqdm[Any],
) -> None:
    url = urlsplit(fhir_base)
    assert url.hostname, f"no host in {fhir_base}"
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
    try:
        while (bundle := work.get()) is not None:
            status, body, elapsed_ms = post(connection, url.path or "/", bundle.body)
            with lock:
                record(result, bundle, status, body, elapsed_ms)
            bar.update(bundle.resources)
    finally:
        connection.close()


def post(
    connection: http.client.HTTPConnection, path: str, body: bytes
) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    try:
        connection.request(
            "POST", path, body=body, headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        )
        response = connection.getresponse()
        answer = response.read()
    except (OSError, http.client.HTTPException) as error:
        connection.close()  # reconnects on the next request
        return 0, str(error).encode(), (time.perf_counter() - started) * 1000
    return response.status, answer, (time.perf_counter() - started) * 1000


def record(
    result: IngestResult, bundle: PreparedBundle, status: int, body: bytes, elapsed_ms: float
) -> None:
    result.latencies_ms.append(elapsed_ms)
    if not 200 <= status < 300:
        result.failed_bundles[status] = result.failed_bundles.get(status, 0) + 1
        result.first_failure = result.first_failure or f"{status}: {body[:500]!r}"
        return
    result.resources += bundle.resources
    result.patient_ids.extend(patient_ids(body))


def patient_ids(transaction_response: bytes) -> list[str]:
    """Ids from `response.location` (`Patient/<id>/_history/<v>`, maybe absolute)."""
    try:
        bundle = orjson.loads(transaction_response)
    except orjson.JSONDecodeError:
        return []
    ids = []
    for entry in bundle.get("entry") or []:
        location = (entry.get("response") or {}).get("location") or ""
        parts = location.split("/")
        if "Patient" in parts[:-1]:
            ids.append(parts[parts.index("Patient") + 1])
    return ids
