"""With the default of a read journal indexed once a minute (and here once an hour), an
auditor still sees every access at once: a search of AuditEvents and `$access-log` store
what the server process has queued and journaled first (`AuditTrail.catch_up`), over real
HTTP against `fhir-server serve`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.bulk.test_bulk_export_http import export
from tests.support.server import ServerProcess

PATIENT = {"resourceType": "Patient", "id": "cu1", "gender": "female"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    running = ServerProcess(
        tmp_path / "fhir.db",
        FHIR_WORKERS="1",
        FHIR_AUDIT_FLUSH_SECONDS="3600",
        FHIR_AUDIT_INDEX_SECONDS="3600",
    ).start()
    try:
        yield running
    finally:
        running.stop()


def _events(http: httpx.Client, query: str) -> list[dict[str, Any]]:
    found = http.get(f"AuditEvent?{query}")
    assert found.status_code == 200, found.text
    return [e["resource"] for e in found.json().get("entry") or []]


def test_a_search_of_audit_events_sees_the_reads_just_made(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.base + "/", timeout=30) as http:
        assert http.put("Patient/cu1", json=PATIENT).status_code in (200, 201)
        assert all(http.get("Patient/cu1").status_code == 200 for _ in range(3))
        events = _events(http, "patient=Patient/cu1&_count=50")
        actions = sorted(e["action"] for e in events)
        assert actions == ["R", "U"], actions  # the three reads merged into one event
        read = next(e for e in events if e["action"] == "R")
        assert read["period"]["start"] <= read["period"]["end"] == read["recorded"]
        # a later read is there at the next search, not an hour later
        assert http.get("Patient/cu1").status_code == 200
        reads = _events(http, "patient=Patient/cu1&action=R")
        assert len(reads) == 2, reads
        log = http.get("Patient/cu1/$access-log")
        assert log.status_code == 200, log.text
        whats = [
            next(p["valueString"] for p in a["part"] if p["name"] == "what")
            for a in log.json()["parameter"]
        ]
        assert whats.count("read") == 2 and "update" in whats, whats


def test_a_bulk_export_naming_audit_events_includes_the_reads_just_made(
    server: ServerProcess,
) -> None:
    """`$export?_type=AuditEvent` stores the journal at its kick-off: the export (which
    holds the versions as of the kick-off) has the reads made just before it."""
    with httpx.Client(base_url=server.base + "/", timeout=30) as http:
        assert http.put("Patient/cu1", json=PATIENT).status_code in (200, 201)
        assert http.get("Patient/cu1").status_code == 200
        manifest = export(http, "$export", _type="AuditEvent")
        lines = [
            json.loads(line)
            for file in manifest["output"]
            for line in http.get(file["url"]).text.splitlines()
            if line
        ]
        reads = [
            e
            for e in lines
            if e["action"] == "R"
            and {"reference": "Patient/cu1"} in [x["what"] for x in e["entity"]]
        ]
        assert len(reads) == 1, lines
