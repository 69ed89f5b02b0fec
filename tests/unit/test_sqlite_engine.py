"""What only the SQLite engine promises: indexed plans, durability on kill -9, its schema.

The behaviour every engine shares is in tests/contract; these tests look inside SQLite.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from fhir_server.errors import VersionConflict
from fhir_server.search.conditions import (
    Condition,
    DateCondition,
    IdCondition,
    LastUpdatedCondition,
    QuantityCondition,
    ReferenceCondition,
    SearchQuery,
    SortKey,
    StringCondition,
    TokenCondition,
    UriCondition,
)
from fhir_server.search.values import (
    DateValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.storage.base import HistoryQuery, StoredResource
from fhir_server.storage.sqlite import SCHEMA_VERSION, SQLiteStorage

DAY = ("2020-03-05T00:00:00.000000Z", "2020-03-05T23:59:59.999999Z")


def patient(id: str, version: int = 1, at: str = "2026-01-01T00:00:00.000000Z") -> StoredResource:
    data = f'{{"resourceType":"Patient","id":"{id}"}}'.encode()
    return StoredResource("Patient", id, version, at, False, data, "POST")


INDEX = [
    TokenValue("identifier", "urn:mrn", "1"),
    StringValue("name", "muller", "Müller"),
    ReferenceValue("organization", "Organization", "o1"),
    ReferenceValue("link", None, None, url="http://x.org/Patient/1"),
    DateValue("birthdate", *DAY),
    QuantityValue("weight", 70.0, 70.0, "http://unitsofmeasure.org", "kg"),
    UriValue("profile", "http://x.org/StructureDefinition/p"),
]


@pytest.fixture
async def traced(tmp_path: Path):
    """An engine with a few patients, and the list of SQL statements it runs."""
    statements: list[str] = []
    storage = SQLiteStorage(tmp_path / "plan.db", trace=statements.append)
    await storage.open()
    async with storage.transaction() as tx:
        for n in range(50):
            await tx.write(patient(f"p{n}"), INDEX, expected_version=0)
    statements.clear()
    yield storage, statements
    await storage.close()


def plans(db: Path, statements: list[str]) -> list[str]:
    """EXPLAIN QUERY PLAN of every SELECT, one line per plan step."""
    with closing(sqlite3.connect(db)) as conn:
        return [row[3] for sql in statements if sql.lstrip().upper().startswith(("SELECT", "WITH"))
                for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]


KINDS = ("token", "string", "reference", "date", "number", "quantity", "uri")
TABLES = {"resources", "r", "versions", "v", "w", *(f"{kind}_idx" for kind in KINDS)}


def assert_indexed(steps: list[str]) -> None:
    """No step scans a stored table (the CTE listing the types is no table)."""
    assert steps, "no SELECT ran"
    scans = [s for s in steps if s.startswith("SCAN") and s.split()[1] in TABLES]
    assert not scans, steps
    assert any("INDEX" in s for s in steps), steps


CONDITIONS: dict[str, Condition] = {
    "token": TokenCondition("identifier", "urn:mrn", "1"),
    "token-code": TokenCondition("identifier", None, "1"),
    "token-system": TokenCondition("identifier", "urn:mrn", None),
    "string": StringCondition("name", "mul"),
    "string-exact": StringCondition("name", "Müller", "exact"),
    "string-contains": StringCondition("name", "ll", "contains"),
    "reference": ReferenceCondition("organization", "Organization", "o1"),
    "reference-url": ReferenceCondition("link", url="http://x.org/Patient/1"),
    "date-eq": DateCondition("birthdate", "eq", *DAY),
    "date-ge": DateCondition("birthdate", "ge", *DAY),
    "date-ap": DateCondition("birthdate", "ap", *DAY),
    "quantity": QuantityCondition("weight", "gt", 60.0, 60.0, None, "kg"),
    "uri-above": UriCondition("profile", "http://x.org/StructureDefinition/p/1", "above"),
    "_id": IdCondition(("p1", "p2")),
    "_lastUpdated": LastUpdatedCondition("ge", "2025-01-01T00:00:00.000000Z",
                                         "2025-01-01T23:59:59.999999Z"),
}


@pytest.mark.parametrize("name", list(CONDITIONS))
@pytest.mark.parametrize("types", [("Patient",), ()], ids=["type", "system"])
async def test_search_conditions_use_indexes(traced, name, types) -> None:
    storage, statements = traced
    query = SearchQuery(types, ((CONDITIONS[name],),))
    assert (await storage.search(query)).total
    assert_indexed(plans(storage.path, statements))


@pytest.mark.parametrize("key", ["_id", "_lastUpdated"])
async def test_sorted_search_with_a_condition_starts_from_its_index(traced, key) -> None:
    storage, statements = traced
    query = SearchQuery(("Patient",), ((CONDITIONS["token"],),), sort=(SortKey(key, True),))
    assert len((await storage.search(query)).resources) == 20
    steps = plans(storage.path, statements)
    assert_indexed(steps)
    assert any("token_idx USING COVERING INDEX token_code" in s for s in steps), steps


async def test_read_by_id_is_one_index_lookup(traced) -> None:
    storage, statements = traced
    assert await storage.read("Patient", "p7")
    assert plans(storage.path, statements) == [
        "SEARCH resources USING INDEX sqlite_autoindex_resources_1 (type=? AND id=?)"]


async def test_history_and_vread_use_indexes(traced) -> None:
    storage, statements = traced
    assert await storage.vread("Patient", "p7", 1)
    assert (await storage.history(HistoryQuery("Patient", "p7"))).total == 1
    assert (await storage.history(HistoryQuery("Patient", count=5))).total == 50
    assert_indexed(plans(storage.path, statements))


# -- durability -------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import asyncio, sys
    from fhir_server.storage.base import StoredResource
    from fhir_server.search.values import TokenValue
    from fhir_server.storage.sqlite import SQLiteStorage

    def rec(id):
        return StoredResource("Patient", id, 1, "2026-01-01T00:00:00.000000Z", False,
                              b'{"resourceType":"Patient"}', "POST")

    async def main():
        storage = SQLiteStorage(sys.argv[1])
        await storage.open()
        async with storage.transaction() as tx:
            await tx.write(rec("kept"), [TokenValue("gender", None, "female")],
                           expected_version=0)
        async with storage.transaction() as tx:
            await tx.write(rec("open"), (), expected_version=0)
            print("committed", flush=True)
            await asyncio.sleep(60)

    asyncio.run(main())
""")


async def test_an_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "durable.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = await asyncio.wait_for(asyncio.to_thread(writer.stdout.readline), timeout=30)
        assert line.strip() == b"committed", writer.stderr.read().decode()
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        writer.stdout.close()
        writer.stderr.close()
    storage = SQLiteStorage(db)
    await storage.open()
    try:
        assert (await storage.read("Patient", "kept")).version == 1
        assert await storage.read("Patient", "open") is None  # never committed
        query = SearchQuery(("Patient",), ((TokenCondition("gender", None, "female"),),))
        assert [r.id for r in (await storage.search(query)).resources] == ["kept"]
    finally:
        await storage.close()


# -- schema and files --------------------------------------------------------------------


async def test_reopening_an_existing_file_keeps_data_and_schema(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "fhir.db"
    first = SQLiteStorage(db)
    await first.open()
    async with first.transaction() as tx:
        await tx.write(patient("p1"), INDEX, expected_version=0)
    await first.close()
    again = SQLiteStorage(db)
    await again.open()
    await again.open()  # idempotent even on an open engine's file
    try:
        assert (await again.read("Patient", "p1")).version == 1
    finally:
        await again.close()
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    storage = SQLiteStorage(db)
    with pytest.raises(RuntimeError, match="newer schema"):
        await storage.open()
    await storage.close()


async def test_two_engines_on_one_file_serialize_and_see_each_others_commits(
    tmp_path: Path,
) -> None:
    """As two server processes would: the second writer waits without blocking the loop."""
    db = tmp_path / "shared.db"
    one, two = SQLiteStorage(db), SQLiteStorage(db)
    await one.open()
    await two.open()
    try:
        entered = asyncio.Event()

        async def second_writer() -> None:
            async with two.transaction() as tx:
                entered.set()
                current = await tx.read("Patient", "p1")
                await tx.write(patient("p1", 2), (), expected_version=current.version)

        async with one.transaction() as tx:
            await tx.write(patient("p1"), (), expected_version=0)
            waiting = asyncio.create_task(second_writer())
            await asyncio.sleep(0.05)  # the loop keeps running while `two` waits for the lock
            assert not entered.is_set()
        await asyncio.wait_for(waiting, timeout=10)
        assert (await one.read("Patient", "p1")).version == 2
        with pytest.raises(VersionConflict):
            async with one.transaction() as tx:
                await tx.write(patient("p1", 2), (), expected_version=1)
    finally:
        await one.close()
        await two.close()


async def test_background_checkpoints_keep_the_wal_small(tmp_path: Path) -> None:
    db = tmp_path / "wal.db"
    storage = SQLiteStorage(db, checkpoint_every=20)
    await storage.open()
    try:
        for n in range(300):
            async with storage.transaction() as tx:
                await tx.write(patient(f"p{n}"), INDEX, expected_version=0)
            await asyncio.sleep(0)  # as between requests: a due checkpoint gets its turn
        async with storage.transaction():
            pass  # waits for a running checkpoint, which holds the write lock
        # Without checkpoints 300 commits of ~20 pages would make a WAL of ~24 MiB.
        assert Path(f"{db}-wal").stat().st_size < 4 * 1024 * 1024
        assert (await storage.read("Patient", "p299")).version == 1
    finally:
        await storage.close()
