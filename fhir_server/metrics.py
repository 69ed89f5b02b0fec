"""The server's Prometheus metrics, in one place (prometheus-client).

Every module that counts something imports its metric from here; `GET /metrics` renders
them. Labels have bounded values only: interactions and statuses from fixed sets, resource
types from the server's own list (anything else is `other`), HL7 message types as MSH-9
code^event (at most 7 characters each, anything else `other`).

Several worker processes: when `PROMETHEUS_MULTIPROC_DIR` names a directory (the serve
command sets it for `--workers N` > 1), every process writes its values there and
`render()` sums them (prometheus-client's multi-process mode); gauges then use the
mode that fits (`livesum` for connections, `max` for sizes).
"""

from __future__ import annotations

import os
import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

requests = Counter(
    "fhir_http_requests_total",
    "HTTP requests answered, by interaction, resource type and status code",
    ("interaction", "resource_type", "status"),
)
latency = Histogram(
    "fhir_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by interaction",
    ("interaction",),
    buckets=_LATENCY_BUCKETS,
)
connections = Gauge("fhir_http_connections", "Open HTTP connections", multiprocess_mode="livesum")
commit_seconds = Histogram(
    "fhir_storage_commit_duration_seconds",
    "Time of one storage commit (one group of writes)",
    buckets=_LATENCY_BUCKETS,
)
commit_group_size = Histogram(
    "fhir_storage_commit_group_size",
    "Writes committed together in one storage commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
hl7_messages = Counter(
    "fhir_hl7_messages_total",
    "HL7 v2 messages received, by message type (code^event) and acknowledgement code",
    ("message_type", "ack_code"),
)
hl7_inbox_depth = Gauge(
    "fhir_hl7_inbox_depth",
    "HL7 v2 messages received and not yet processed",
    multiprocess_mode="max",
)
hl7_dead_letters = Gauge(
    "fhir_hl7_dead_letters", "HL7 v2 messages set aside after failing", multiprocess_mode="max"
)
database_bytes = Gauge(
    "fhir_database_bytes", "Size of the database files on disk", multiprocess_mode="max"
)

_MESSAGE_TYPE = re.compile(r"[A-Z0-9]{3}(\^[A-Z0-9]{3})?")
_ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})


def message_type(code: str, event: str) -> str:
    """A bounded label for an HL7 message type: `ADT^A01`, or `other`."""
    value = f"{code}^{event}" if event else code
    return value if _MESSAGE_TYPE.fullmatch(value) else "other"


def count_hl7(code: str, event: str, ack_code: str) -> None:
    hl7_messages.labels(
        message_type(code, event), ack_code if ack_code in _ACK_CODES else "other"
    ).inc()


def database_size(path: str) -> int:
    """Bytes of a SQLite database with its WAL and shared-memory files (0 when absent)."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.stat(path + suffix).st_size
        except OSError:
            continue
    return total


def render() -> bytes:
    """The metrics of this process, or of every worker in multi-process mode."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(DEFAULT_REGISTRY)
