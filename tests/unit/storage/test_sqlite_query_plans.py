"""Every indexed search on SQLite reads through an index: no full scan of a table.

Each search below runs on a real SQLite file; the statements it executes are captured
with `set_trace_callback` (which gives them with their values bound) and explained with
`EXPLAIN QUERY PLAN` on a second connection. A plan step `SCAN <table>` walks a whole table or a
whole index (`SCAN string_idx USING COVERING INDEX ...` reads the values of every string
parameter of every type) and fails the test; only `SEARCH` steps, which seek, pass.
Scanning a subquery's own rows (`SCAN (subquery-1)`, e.g. to count them) is fine.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fhir_server.context import SYSTEM
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.search.parse import parse_search
from fhir_server.storage.sqlite import SQLiteStorage

SEARCHES = [
    ("Patient", "identifier=urn:mrn|m1"),
    ("Patient", "identifier=m1"),
    ("Patient", "identifier=urn:mrn|"),
    ("Patient", "gender=female"),
    ("Patient", "gender:not=female"),
    ("Patient", "name=smi"),
    ("Patient", "name:exact=Smith"),
    ("Patient", "name:contains=mit"),
    ("Patient", "family=smith,jones"),
    ("Patient", "birthdate=1970-03"),
    ("Patient", "birthdate=gt1970-03-04"),
    ("Patient", "birthdate=le1980"),
    ("Patient", "birthdate=sa1970"),
    ("Patient", "birthdate=ap1970-03-04"),
    ("Patient", "birthdate:missing=true"),
    ("Patient", "_id=p1"),
    ("Patient", "_lastUpdated=gt2020-01-01"),
    ("Patient", "_tag=urn:tags|vip"),
    ("Patient", "gender=female&birthdate=ge1970&name=smi"),
    ("Observation", "subject=Patient/p1"),
    ("Observation", "subject=p1"),
    ("Observation", "patient=Patient/p1"),
    ("Observation", "code=http://loinc.org|8480-6"),
    ("Observation", "code=http://loinc.org|8480-6&date=ge2024-01-01"),
    ("Observation", "value-quantity=gt100"),
    ("Observation", "value-quantity=120|http://unitsofmeasure.org|mm[Hg]"),
    ("Observation", "value-quantity=ap120"),
    ("RiskAssessment", "probability=gt0.5"),
    ("ValueSet", "url=http://example.org/vs"),
    ("ValueSet", "url:below=http://example.org/"),
    ("Observation", "_summary=count&code=http://loinc.org|8480-6"),
    ("Patient", "_sort=-_lastUpdated&gender=female"),
]
_SCAN = re.compile(r"^SCAN (\S+)(.*)$")
_OK_SCANS = ("USING INTEGER PRIMARY KEY", "USING ROWID")  # by rowid: one row per step


async def _fill(svc: FhirService) -> None:
    async def put(resource: dict[str, Any]) -> None:
        await svc.handle(
            Request(
                "PUT", f"{resource['resourceType']}/{resource['id']}", body=resource, context=SYSTEM
            )
        )

    for n in range(30):
        await put(
            {
                "resourceType": "Patient",
                "id": f"p{n}",
                "gender": "female",
                "birthDate": f"19{50 + n}-03-04",
                "name": [{"family": f"Smith{n}"}],
                "identifier": [{"system": "urn:mrn", "value": f"m{n}"}],
                "meta": {"tag": [{"system": "urn:tags", "code": "vip"}]},
            }
        )
        await put(
            {
                "resourceType": "Observation",
                "id": f"o{n}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "subject": {"reference": f"Patient/p{n}"},
                "effectiveDateTime": "2024-05-01T10:00:00Z",
                "valueQuantity": {
                    "value": 100 + n,
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            }
        )


def full_scans(path: Path, statement: str) -> list[str]:
    """The plan steps of `statement` that walk a whole table or index."""
    with sqlite3.connect(path) as conn:
        steps = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement)]
    found = []
    for step in steps:
        scan = _SCAN.match(step)
        if (
            scan
            and not scan.group(1).startswith("(")
            and scan.group(1) != "CONSTANT"
            and not any(ok in scan.group(2) for ok in _OK_SCANS)
        ):
            found.append(step)
    return found


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio

    path = tmp_path_factory.mktemp("plans") / "plans.db"

    async def build() -> None:
        storage = SQLiteStorage(path)
        await storage.open()
        try:
            await _fill(FhirService(storage))
        finally:
            await storage.close()

    asyncio.run(build())
    return path


@pytest.mark.parametrize(("type", "query"), SEARCHES)
async def test_search_uses_indexes(database: Path, type: str, query: str) -> None:
    storage = SQLiteStorage(database)
    await storage.open()
    try:
        svc = FhirService(storage)
        params = [tuple(p.split("=", 1)) for p in query.split("&")]
        parsed = parse_search(svc.registry, (type,), params, strict=True)  # type: ignore[arg-type]
        statements: list[str] = []
        conn = storage._read_conn  # the test watches the engine's own SQL
        conn.set_trace_callback(statements.append)
        try:
            page = await storage.search(parsed.query)
        finally:
            conn.set_trace_callback(None)
    finally:
        await storage.close()
    selects = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert selects, f"no SELECT captured for {type}?{query}"
    for statement in selects:
        scans = full_scans(database, statement)
        assert not scans, f"{type}?{query}: full scan {scans} in\n{statement}"
    assert page.total is None or page.total >= 0


def test_the_check_sees_a_full_scan(database: Path) -> None:
    assert full_scans(database, "SELECT rid FROM resources WHERE data LIKE '%x%'")
    assert full_scans(database, "SELECT rid FROM string_idx WHERE value > 'a'")
    assert not full_scans(
        database, "SELECT data FROM resources WHERE type = 'Patient' AND id = 'p1'"
    )
