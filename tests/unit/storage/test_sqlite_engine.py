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
from typing import Any

import pytest

from fhir_server.errors import VersionConflict
from fhir_server.search.conditions import (
    Condition,
    DateCondition,
    IdCondition,
    LastUpdatedCondition,
    MissingCondition,
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
    IndexValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.storage.base import HistoryQuery, StoredResource
from fhir_server.storage.sqlite import SCHEMA_VERSION, SQLiteStorage, statistics

DAY = ("2020-03-05T00:00:00.000000Z", "2020-03-05T23:59:59.999999Z")


def patient(id: str, version: int = 1, at: str = "2026-01-01T00:00:00.000000Z") -> StoredResource:
    data = f'{{"resourceType":"Patient","id":"{id}"}}'.encode()
    return StoredResource("Patient", id, version, at, False, data, "POST")


INDEX: list[IndexValue] = [
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
        return [
            row[3]
            for sql in statements
            if sql.lstrip().upper().startswith(("SELECT", "WITH"))
            for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")
        ]


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
    "_lastUpdated": LastUpdatedCondition(
        "ge", "2025-01-01T00:00:00.000000Z", "2025-01-01T23:59:59.999999Z"
    ),
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


async def test_a_walked_search_tests_the_index_tables_by_rid(traced) -> None:
    storage, statements = traced
    walking = SQLiteStorage(storage.path, probe_limit=0, trace=statements.append)
    await walking.open()
    try:
        clauses = ((CONDITIONS["token-code"],), (CONDITIONS["string"], CONDITIONS["date-ge"]))
        query = SearchQuery(("Patient",), clauses, sort=(SortKey("_id"),))
        assert (await walking.search(query)).total == 50
    finally:
        await walking.close()
    steps = plans(storage.path, statements)
    assert_indexed(steps)
    assert any("token_idx USING PRIMARY KEY (rid=?)" in s for s in steps), steps


async def test_read_by_id_is_one_index_lookup(traced) -> None:
    storage, statements = traced
    assert await storage.read("Patient", "p7")
    assert plans(storage.path, statements) == [
        "SEARCH resources USING INDEX sqlite_autoindex_resources_1 (type=? AND id=?)"
    ]


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
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
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


async def test_planner_statistics_come_with_size_and_fix_the_has_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ANALYZE` runs once the store holds MIN_ROWS resources and again when it doubled;
    with statistics, a reverse chain reads the reference index by rid, not by param."""
    monkeypatch.setattr(statistics, "MIN_ROWS", 40)
    db = tmp_path / "fhir.db"
    store = SQLiteStorage(db)
    await store.open()
    try:
        async with store.transaction() as tx:
            for n in range(30):
                await tx.write(patient(f"p{n}"), INDEX, expected_version=0)
        with closing(sqlite3.connect(db)) as conn:
            assert not statistics.refresh(conn)  # 30 < 40: no statistics for a small store
            async with store.transaction() as tx:
                for n in range(30, 50):
                    await tx.write(patient(f"p{n}"), INDEX, expected_version=0)
            assert statistics.refresh(conn)
            assert not statistics.refresh(conn)  # fresh: not again until it doubles
            has = (
                "SELECT t.rid FROM reference_idx ri JOIN resources t ON t.type = "
                "ri.target_type AND t.id = ri.target_id WHERE ri.type = 'Encounter' AND "
                "ri.param = 'subject' AND ri.rid IN (SELECT rid FROM resources WHERE "
                "type = 'Encounter' AND id IN ('e1'))"
            )
            conn.execute(
                "INSERT OR REPLACE INTO sqlite_stat1 VALUES ('reference_idx', "
                "'reference_target', '1000000 100000 100000 2 2')"
            )
            conn.execute("ANALYZE sqlite_schema")  # reload the statistics
            plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {has}"))
            assert "SEARCH ri USING PRIMARY KEY (rid=?)" in plan, plan
    finally:
        await store.close()


async def test_a_version_1_file_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    """Version 2 adds composite_idx, geo_idx and the token text index to existing files;
    version 3 the type counts, filled from what the file holds."""
    db = tmp_path / "v1.db"
    storage = SQLiteStorage(db)
    await storage.open()
    async with storage.transaction() as tx:
        for n in range(3):
            await tx.write(patient(f"p{n}"), INDEX, expected_version=0)
    await storage.close()
    with closing(sqlite3.connect(db)) as conn:  # back to what a version 1 file holds
        for statement in (
            "DROP TABLE composite_idx",
            "DROP TABLE geo_idx",
            "DROP INDEX token_text",
            "DROP TABLE type_counts",
            "DROP TRIGGER type_counts_insert",
            "DROP TRIGGER type_counts_update",
            "DROP TRIGGER type_counts_delete",
            "DROP TABLE leases",
            "DROP TABLE generations",
            "DROP TABLE saved_state",
            "DROP TABLE queue_heads",
            "DROP TABLE queue_entries",
            "PRAGMA user_version = 1",
        ):
            conn.execute(statement)
    again = SQLiteStorage(db)
    await again.open()
    try:
        page = await again.search(SearchQuery(("Patient",), count=0))
        assert page.total == 3
    finally:
        await again.close()
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {
            "composite_idx",
            "geo_idx",
            "token_text",
            "geo_position",
            "type_counts",
            "type_counts_insert",
            "leases",
            "generations",
            "saved_state",
            "queue_heads",
            "queue_entries",
        } <= names


async def test_type_counts_follow_creates_deletes_and_undeletes(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "fhir.db")
    await store.open()
    try:

        async def total(*types: str) -> int | None:
            return (await store.search(SearchQuery(types, count=0))).total

        async with store.transaction() as tx:
            for n in range(4):
                await tx.write(patient(f"p{n}"), INDEX, expected_version=0)
            gone = patient("p1", version=2)
            await tx.write(
                StoredResource("Patient", "p1", 2, gone.last_updated, True, b"", "DELETE"),
                [],
                expected_version=1,
            )
        assert await total("Patient") == 3 and await total() == 3
        async with store.transaction() as tx:  # an update of a live one changes nothing
            await tx.write(patient("p0", version=2), INDEX, expected_version=1)
            await tx.write(patient("p1", version=3), INDEX, expected_version=2)  # back
        assert await total("Patient") == 4 and await total("Observation") == 0
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    storage = SQLiteStorage(db)
    with pytest.raises(RuntimeError, match="newer than this server knows"):
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


async def test_a_shared_file_is_checkpointed_by_the_leader_duty_only(tmp_path: Path) -> None:
    """With several processes on the file (`shared`), commits trigger no checkpoint: the
    leader's `maintenance_duty` runs them, every `checkpoint_interval` seconds."""
    db = tmp_path / "shared.db"
    follower = SQLiteStorage(db, checkpoint_every=1, checkpoint_interval=0.05, shared=True)
    leader = SQLiteStorage(db, checkpoint_every=1, checkpoint_interval=0.05, shared=True)
    await follower.open()
    await leader.open()
    wal = Path(f"{db}-wal")

    async def write(start: int) -> None:
        for n in range(start, start + 60):
            async with follower.transaction() as tx:
                await tx.write(patient(f"p{n}"), INDEX, expected_version=0)
            await asyncio.sleep(0)

    try:
        await write(0)
        await asyncio.sleep(0.2)
        grown = wal.stat().st_size
        assert grown > 512 * 1024  # nobody checkpointed: the WAL only grew
        async with leader.maintenance_duty():
            await asyncio.sleep(0.3)  # a checkpoint ran: the next writer restarts the WAL
            await write(60)
            await asyncio.sleep(0.3)
        assert wal.stat().st_size < grown * 3 // 2  # restarted, not grown twice as large
    finally:
        await follower.close()
        await leader.close()


# -- the two search plans agree ------------------------------------------------------------

GIVEN = ["anna", "bert", "carla", "dora", "emil"]


def index_of(n: int) -> list[Any]:
    year = 1950 + n % 40
    return [
        TokenValue("identifier", "urn:mrn", str(n)),
        TokenValue("gender", None, "female" if n % 2 else "male"),
        StringValue("given", GIVEN[n % 5], GIVEN[n % 5].title()),
        ReferenceValue("organization", "Organization", f"o{n % 3}"),
        DateValue("birthdate", f"{year}-01-01T00:00:00.000000Z", f"{year}-12-31T23:59:59.999999Z"),
        QuantityValue("weight", float(n), float(n), "http://unitsofmeasure.org", "kg"),
        *([UriValue("profile", f"http://x.org/p/{n % 4}")] if n % 3 else []),
    ]


QUERIES = {
    "token": ((TokenCondition("gender", None, "female"),),),
    "token-not": ((TokenCondition("gender", None, "female", negate=True),),),
    "two clauses": ((TokenCondition("gender", None, "male"),), (StringCondition("given", "an"),)),
    "or": ((StringCondition("given", "bert"), ReferenceCondition("organization", None, "o1")),),
    "or with not": (
        (StringCondition("given", "emil"), TokenCondition("gender", None, "male", negate=True)),
    ),
    "date": (
        (
            DateCondition(
                "birthdate", "ge", "1970-01-01T00:00:00.000000Z", "1970-12-31T23:59:59.999999Z"
            ),
        ),
    ),
    "date ne": (
        (
            DateCondition(
                "birthdate", "ne", "1970-01-01T00:00:00.000000Z", "1970-12-31T23:59:59.999999Z"
            ),
        ),
    ),
    "date ap": (
        (
            DateCondition(
                "birthdate", "ap", "1970-06-01T00:00:00.000000Z", "1975-01-31T23:59:59.999999Z"
            ),
        ),
    ),
    "token system": ((TokenCondition("identifier", "urn:mrn", None),),),
    "string exact": ((StringCondition("given", "Carla", "exact"),),),
    "string contains": ((StringCondition("given", "r", "contains"),),),
    "uri above": ((UriCondition("profile", "http://x.org/p/1/v2", "above"),),),
    "quantity": ((QuantityCondition("weight", "lt", 30.0, 30.0, None, "kg"),),),
    "uri below": ((UriCondition("profile", "http://x.org/p/", "below"),),),
    "missing": ((MissingCondition("profile", "uri", True),),),
    "_id": ((IdCondition(("p3", "p4", "p9")),),),
    "_lastUpdated": (
        (LastUpdatedCondition("ge", "2026-01-01T00:00:20.000000Z", "2026-01-01T00:00:20.999999Z"),),
    ),
    "none found": ((TokenCondition("gender", None, "other"),),),
}
SORTS = {
    "insertion": (),
    "-_lastUpdated": (SortKey("_lastUpdated", True),),
    "_id": (SortKey("_id"),),
}


@pytest.fixture
async def both_plans(tmp_path: Path):
    """One file, two engines: one starts searches from an index, one walks the rows."""
    db = tmp_path / "plans.db"
    starting, walking = SQLiteStorage(db), SQLiteStorage(db, probe_limit=0)
    await starting.open()
    await walking.open()
    for n in range(60):
        at = f"2026-01-01T00:00:{n // 2:02d}.000000Z"  # pairs share an instant: ties
        async with starting.transaction() as tx:
            await tx.write(patient(f"p{n}", at=at), index_of(n), expected_version=0)
    for n in range(0, 60, 7):
        async with starting.transaction() as tx:
            await tx.write(
                patient(f"p{n}", 2, at="2026-01-01T00:01:00.000000Z"),
                index_of(n + 1),
                expected_version=1,
            )
    for n in range(9, 60, 10):
        async with starting.transaction() as tx:
            current = (await tx.read("Patient", f"p{n}")).version
            gone = StoredResource(
                "Patient", f"p{n}", current + 1, "2026-01-01T00:02:00.000000Z", True, b"", "DELETE"
            )
            await tx.write(gone, (), expected_version=current)
    yield starting, walking
    await walking.close()
    await starting.close()


@pytest.mark.parametrize("sort", list(SORTS))
@pytest.mark.parametrize("name", list(QUERIES))
@pytest.mark.parametrize("types", [("Patient",), ()], ids=["type", "system"])
async def test_walking_and_starting_from_an_index_agree(both_plans, name, sort, types) -> None:
    starting, walking = both_plans
    for offset in (0, 7):
        query = SearchQuery(types, QUERIES[name], sort=SORTS[sort], count=10, offset=offset)
        one, other = await starting.search(query), await walking.search(query)
        assert [r.id for r in one.resources] == [r.id for r in other.resources]
        assert one.total == other.total


# -- group commit --------------------------------------------------------------------------


async def test_queued_transactions_share_one_commit_and_return_after_it(tmp_path: Path) -> None:
    db = tmp_path / "group.db"
    statements: list[str] = []
    storage, observer = SQLiteStorage(db, trace=statements.append), SQLiteStorage(db)
    await storage.open()
    await observer.open()
    try:
        first_holds_lock, release = asyncio.Event(), asyncio.Event()

        async def create(n: int) -> None:
            async with storage.transaction() as tx:
                await tx.write(patient(f"p{n}"), INDEX, expected_version=0)
                if n == 0:
                    first_holds_lock.set()
                    await release.wait()
            # Returned: committed, so visible to another connection.
            assert await observer.read("Patient", f"p{n}") is not None

        first = asyncio.create_task(create(0))
        await first_holds_lock.wait()
        statements.clear()
        others = [asyncio.create_task(create(n)) for n in range(1, 10)]
        await asyncio.sleep(0.01)  # all nine queue up behind the first
        release.set()
        await asyncio.gather(first, *others)
        assert statements.count("COMMIT") == 1
        assert statements.count("BEGIN IMMEDIATE") == 0  # all joined the first's
    finally:
        await observer.close()
        await storage.close()


async def test_a_lease_renewal_goes_before_the_queued_writes(tmp_path: Path) -> None:
    """Under write load the leader's lease renewal waited behind every queued transaction of
    its own process, timed out and the leader stepped down (stopping the MLLP listener)."""
    storage = SQLiteStorage(tmp_path / "group.db")
    await storage.open()
    try:
        first_holds_lock, release = asyncio.Event(), asyncio.Event()
        started: list[int] = []  # the writes that had the lock, in turn
        renewed_after: list[int] = []

        async def create(n: int) -> None:
            async with storage.transaction() as tx:
                started.append(n)
                await tx.write(patient(f"p{n}"), INDEX, expected_version=0)
                if n == 0:
                    first_holds_lock.set()
                    await release.wait()
                await asyncio.sleep(0.01)  # a slow member: the queue behind it grows

        async def renew() -> None:
            assert await storage.acquire_lease("leader", "me", 5.0)
            renewed_after.append(len(started))  # committed and returned: how many had begun

        first = asyncio.create_task(create(0))
        await first_holds_lock.wait()
        writes = [asyncio.create_task(create(n)) for n in range(1, 8)]
        await asyncio.sleep(0.01)  # seven writes queue up behind the first
        lease = asyncio.create_task(renew())
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(first, lease, *writes)
        assert renewed_after[0] <= 2, renewed_after  # right after the write holding the lock
        for n in range(8):
            assert (await storage.read("Patient", f"p{n}")).version == 1
    finally:
        await storage.close()


async def test_a_failing_member_of_a_group_rolls_back_alone(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "group.db")
    await storage.open()
    try:
        go = asyncio.Event()

        async def create(n: int) -> None:
            async with storage.transaction() as tx:
                await tx.write(patient(f"p{n}"), INDEX, expected_version=0)
                if n == 0:
                    await go.wait()
                if n == 2:
                    raise ValueError("member 2 fails")

        tasks = [asyncio.create_task(create(n)) for n in range(4)]
        await asyncio.sleep(0.01)
        go.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [type(r) for r in results] == [type(None), type(None), ValueError, type(None)]
        assert await storage.read("Patient", "p2") is None
        for n in (0, 1, 3):
            assert (await storage.read("Patient", f"p{n}")).version == 1
        query = SearchQuery(("Patient",), ((TokenCondition("identifier", "urn:mrn", "1"),),))
        assert (await storage.search(query)).total == 3
    finally:
        await storage.close()


async def test_a_cancelled_waiter_does_not_strand_the_group(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "group.db")
    await storage.open()
    try:
        go = asyncio.Event()

        async def create(n: int) -> None:
            async with storage.transaction() as tx:
                if n == 0:
                    await go.wait()
                await tx.write(patient(f"p{n}"), (), expected_version=0)

        first, waiter = asyncio.create_task(create(0)), asyncio.create_task(create(1))
        await asyncio.sleep(0.01)
        go.set()
        await asyncio.sleep(0)  # the first finishes, sees the waiter and leaves the group open
        waiter.cancel()  # it never runs: nobody from the queue will commit the group
        await asyncio.wait_for(first, timeout=5)  # returns: it was committed anyway
        assert waiter.cancelled()
        assert (await storage.read("Patient", "p0")).version == 1
    finally:
        await storage.close()


async def test_a_failed_commit_fails_every_member_of_the_group(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "group.db")
    await storage.open()
    conn = storage._writes.conn  # SQLite internals: a deferred constraint fails the COMMIT
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE child (parent INTEGER REFERENCES parent DEFERRABLE INITIALLY DEFERRED)"
    )
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        go = asyncio.Event()

        async def create(n: int) -> None:
            async with storage.transaction() as tx:
                await tx.write(patient(f"p{n}"), (), expected_version=0)
                if n == 0:
                    await go.wait()
                if n == 2:
                    conn.execute("INSERT INTO child VALUES (42)")  # no parent 42

        tasks = [asyncio.create_task(create(n)) for n in range(3)]
        await asyncio.sleep(0.01)
        go.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
        for n in range(3):
            assert await storage.read("Patient", f"p{n}") is None
        async with storage.transaction() as tx:  # the engine still works afterwards
            await tx.write(patient("p9"), (), expected_version=0)
        assert (await storage.read("Patient", "p9")).version == 1
    finally:
        await storage.close()
