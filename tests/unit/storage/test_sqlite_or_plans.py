"""An OR of many values on SQLite is still index seeks, one per value, in one statement.

The values of one shape are bound as one JSON array, which `json_each` walks: the plan
then scans that virtual table (the list of values the client sent, not data) and seeks
the index once per value. Every other step must be a seek, as in `test_sqlite_query_plans`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fhir_server.interactions.service import FhirService
from fhir_server.search.parse import parse_search
from fhir_server.storage.sqlite import SQLiteStorage
from tests.unit.storage.test_sqlite_query_plans import _fill, full_scans

N = 600  # more than SQLite's 500 terms of one compound SELECT


def _many(make: str, start: int = 0) -> str:
    return ",".join(make.format(n=n) for n in range(start, start + N))


SEARCHES = [
    ("Patient", [("identifier", _many("urn:mrn|m{n}"))]),
    ("Patient", [("identifier", _many("m{n}"))]),
    ("Patient", [("_id", _many("p{n}"))]),
    ("Patient", [("family", _many("smith{n}"))]),
    ("Patient", [("birthdate", _many("{n}-03-04", start=1500))]),
    ("Patient", [("gender", "female"), ("identifier", _many("urn:mrn|m{n}"))]),  # a test
    ("Observation", [("subject", _many("Patient/p{n}"))]),
    ("Observation", [("value-quantity", _many("{n}|http://unitsofmeasure.org|mm[Hg]"))]),
    ("Observation", [("subject:Patient.identifier", _many("m{n}"))]),
    ("Patient", [("_has:Observation:subject:_id", _many("o{n}"))]),
    ("Patient", [("_filter", " or ".join(f"identifier eq m{n}" for n in range(N)))]),
]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("or-plans") / "plans.db"

    async def build() -> None:
        storage = SQLiteStorage(path)
        await storage.open()
        try:
            await _fill(FhirService(storage))
        finally:
            await storage.close()

    asyncio.run(build())
    return path


@pytest.mark.parametrize(("type", "params"), SEARCHES, ids=lambda x: str(x)[:40])
async def test_many_values_are_index_seeks(
    database: Path, type: str, params: list[tuple[str, str]]
) -> None:
    storage = SQLiteStorage(database)
    await storage.open()
    try:
        registry = FhirService(storage).registry
        parsed = parse_search(registry, (type,), params, strict=True)
        statements: list[str] = []
        conn = storage._read_conn
        conn.set_trace_callback(statements.append)
        try:
            page = await storage.search(parsed.query)
        finally:
            conn.set_trace_callback(None)
    finally:
        await storage.close()
    selects = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert selects
    for statement in selects:
        assert "UNION ALL" not in statement or statement.count("UNION ALL") < 64
        scans = [s for s in full_scans(database, statement) if "VIRTUAL TABLE" not in s]
        assert not scans, f"{type}: full scan {scans}"
    assert page.total is not None and page.total > 0
