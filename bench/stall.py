"""Reads beside a large transaction: does one big request stop every other client?

One thread POSTs a transaction Bundle of `entries` generated resources; meanwhile another
reads one Patient on its own keep-alive connection at a fixed rate, each read's latency
counted from when it was due (not when it could be sent), so a stall of the server shows
as the whole queue of reads it delayed, not as one slow sample (no coordinated omission).
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

from bench import dataset
from bench.ingest import FHIR_JSON, post

READ_INTERVAL_S = 0.02  # one read due every 20 ms
P99_TARGET_MS = 100.0


@dataclass
class StallResult:
    entries: int
    transaction_status: int = 0
    transaction_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def percentile(self, share: float) -> float | None:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else None

    @property
    def met(self) -> bool:
        p99 = self.percentile(0.99)
        return (
            p99 is not None
            and p99 <= P99_TARGET_MS
            and not self.errors
            and self.transaction_status == 200
        )


def transaction_body(entries: int, seed: int) -> bytes:
    """One transaction of `entries` resources (patients with their encounters, ...)."""
    bundle = next(dataset.transaction_bundles(entries, seed, bundle_size=entries))
    return orjson.dumps(bundle)


def measure(fhir_base: str, patient_id: str, entries: int, seed: int) -> StallResult:
    result = StallResult(entries)
    body = transaction_body(entries, seed)
    done = threading.Event()

    url = urlsplit(fhir_base)

    def connect() -> http.client.HTTPConnection:
        return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=600)

    def write() -> None:
        connection = connect()
        try:
            status, _, elapsed_ms = post(connection, url.path or "/", body)
        finally:
            connection.close()
            done.set()
        result.transaction_status, result.transaction_seconds = status, elapsed_ms / 1000

    writer = threading.Thread(target=write)
    reader = connect()
    path = f"{url.path}/Patient/{patient_id}"
    try:
        _read(reader, path)  # connected before the clock starts
        writer.start()
        _read_until(reader, path, done, result)
    finally:
        writer.join()
        reader.close()
    return result


def _read(connection: http.client.HTTPConnection, path: str) -> int:
    connection.request("GET", path, headers={"Accept": FHIR_JSON})
    response = connection.getresponse()
    response.read()
    return response.status


def _read_until(
    connection: http.client.HTTPConnection, path: str, done: threading.Event, result: StallResult
) -> None:
    due = time.perf_counter()
    while not done.is_set():
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        try:
            status = _read(connection, path)
        except (OSError, http.client.HTTPException):
            status = 0
            connection.close()
        result.latencies_ms.append((time.perf_counter() - due) * 1000)
        result.errors += not 200 <= status < 300
        due += READ_INTERVAL_S
