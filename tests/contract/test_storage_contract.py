"""The storage contract: every engine in `ENGINE_FACTORIES` passes this suite unchanged.

It uses the `Storage` protocol only (fhir_server/storage/base.py), with index values built
by hand, so it states what the FHIR service may rely on whatever the engine: versioning
and conflicts, tombstones, transactions, history, every search condition kind, sorting,
paging and streaming. Expected search results are derived by hand from the FHIR R4 rules
and, for prefixes on ranges, cross-checked against `range_matches`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from fhir_server.errors import VersionConflict
from fhir_server.search.conditions import (
    Condition,
    DateCondition,
    IdCondition,
    LastUpdatedCondition,
    MissingCondition,
    NumberCondition,
    Prefix,
    QuantityCondition,
    ReferenceCondition,
    SearchQuery,
    SortKey,
    StringCondition,
    TokenCondition,
    UriCondition,
    range_matches,
)
from fhir_server.search.values import (
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.storage.base import HistoryQuery, Storage, StorageTx, StoredResource

# -- helpers ---------------------------------------------------------------------------

BASE = datetime(2026, 1, 1, tzinfo=UTC)
_ticks = itertools.count(1)


def instant(seconds: float) -> str:
    """BASE + seconds in the storage format (UTC, microseconds)."""
    return (BASE + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> str:
    """A fresh instant, later than every earlier one (an hour apart from hand-set ones)."""
    return instant(3600 + next(_ticks))


def body(type: str, id: str, version: int) -> bytes:
    return f'{{"resourceType":"{type}","id":"{id}","meta":{{"versionId":"{version}"}}}}'.encode()


async def put_in(
    tx: StorageTx,
    type: str,
    id: str,
    index: Sequence[IndexValue] = (),
    *,
    at: str | None = None,
    data: bytes | None = None,
) -> StoredResource:
    """Write the next version of type/id inside `tx`, as the service does."""
    current = await tx.read(type, id)
    version = current.version + 1 if current else 1
    method: Literal["PUT", "POST"] = "PUT" if current else "POST"
    rec = StoredResource(
        type,
        id,
        version,
        at or now(),
        False,
        data if data is not None else body(type, id, version),
        method,
    )
    await tx.write(rec, index, expected_version=version - 1)
    return rec


async def put(
    storage: Storage,
    type: str,
    id: str,
    index: Sequence[IndexValue] = (),
    *,
    at: str | None = None,
    data: bytes | None = None,
) -> StoredResource:
    """Write the next version of type/id in its own transaction."""
    async with storage.transaction() as tx:
        return await put_in(tx, type, id, index, at=at, data=data)


async def delete(storage: Storage, type: str, id: str, *, at: str | None = None) -> StoredResource:
    async with storage.transaction() as tx:
        current = await tx.read(type, id)
        assert current is not None
        rec = StoredResource(type, id, current.version + 1, at or now(), True, b"", "DELETE")
        await tx.write(rec, (), expected_version=current.version)
        return rec


async def found(
    storage: Storage, *clauses: Condition | tuple[Condition, ...], types: tuple[str, ...] = ("Obs",)
) -> set[str]:
    """Ids of the resources matching every clause (a tuple clause is an OR)."""
    query = SearchQuery(
        types, tuple(c if isinstance(c, tuple) else (c,) for c in clauses), count=1000
    )
    return {r.id for r in (await storage.search(query)).resources}


def versions(page_resources: Sequence[StoredResource]) -> list[tuple[str, int]]:
    return [(r.id, r.version) for r in page_resources]


# -- write, read, vread ----------------------------------------------------------------


async def test_create_then_read_returns_the_bytes_unchanged(storage: Storage) -> None:
    data = '{"resourceType": "Patient",  "id":"p1", "name":[{"family":"Müller"}] }'.encode()
    rec = await put(storage, "Patient", "p1", data=data)
    read = await storage.read("Patient", "p1")
    assert read == rec
    assert read.data == data and read.version == 1 and not read.deleted
    assert read.method == "POST"


async def test_read_of_an_unknown_resource_is_none(storage: Storage) -> None:
    await put(storage, "Patient", "p1")
    assert await storage.read("Patient", "p2") is None
    assert await storage.read("Observation", "p1") is None


async def test_same_id_in_two_types_are_two_resources(storage: Storage) -> None:
    await put(storage, "Patient", "x")
    await put(storage, "Observation", "x")
    await put(storage, "Observation", "x")
    assert (await storage.read("Patient", "x")).version == 1
    assert (await storage.read("Observation", "x")).version == 2


async def test_updates_number_versions_and_vread_keeps_each(storage: Storage) -> None:
    first = await put(storage, "Patient", "p1")
    second = await put(storage, "Patient", "p1")
    third = await put(storage, "Patient", "p1")
    assert [first.version, second.version, third.version] == [1, 2, 3]
    assert await storage.read("Patient", "p1") == third
    assert await storage.vread("Patient", "p1", 1) == first
    assert await storage.vread("Patient", "p1", 2) == second
    assert (await storage.vread("Patient", "p1", 2)).method == "PUT"
    assert await storage.vread("Patient", "p1", 4) is None
    assert await storage.vread("Patient", "nope", 1) is None


async def test_create_of_an_existing_resource_conflicts(storage: Storage) -> None:
    await put(storage, "Patient", "p1")
    rec = StoredResource("Patient", "p1", 1, now(), False, b"{}", "POST")
    with pytest.raises(VersionConflict) as raised:
        async with storage.transaction() as tx:
            await tx.write(rec, (), expected_version=0)
    assert (raised.value.type, raised.value.id) == ("Patient", "p1")
    assert raised.value.expected == 0  # `actual` is optional information


async def test_update_with_a_stale_version_conflicts(storage: Storage) -> None:
    await put(storage, "Patient", "p1")
    await put(storage, "Patient", "p1")
    stale = StoredResource("Patient", "p1", 2, now(), False, b"{}", "PUT")
    with pytest.raises(VersionConflict) as raised:
        async with storage.transaction() as tx:
            await tx.write(stale, (), expected_version=1)
    assert raised.value.expected == 1
    assert (await storage.read("Patient", "p1")).version == 2


async def test_update_of_a_missing_resource_conflicts(storage: Storage) -> None:
    rec = StoredResource("Patient", "ghost", 2, now(), False, b"{}", "PUT")
    with pytest.raises(VersionConflict):
        async with storage.transaction() as tx:
            await tx.write(rec, (), expected_version=1)
    assert await storage.read("Patient", "ghost") is None


async def test_two_writers_of_the_same_version_exactly_one_wins(storage: Storage) -> None:
    await put(storage, "Patient", "p1")
    seen = await storage.read("Patient", "p1")

    async def update(tag: str) -> str:
        rec = StoredResource("Patient", "p1", seen.version + 1, now(), False, tag.encode(), "PUT")
        async with storage.transaction() as tx:
            await asyncio.sleep(0)  # let the other writer start its transaction too
            await tx.write(rec, (), expected_version=seen.version)
        return tag

    results = await asyncio.gather(update("a"), update("b"), return_exceptions=True)
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1
    assert [type(r) for r in results if not isinstance(r, str)] == [VersionConflict]
    current = await storage.read("Patient", "p1")
    assert current.version == 2 and current.data == winners[0].encode()


# -- deletion --------------------------------------------------------------------------


async def test_deletion_is_a_tombstone_version(storage: Storage) -> None:
    gender = TokenValue("gender", None, "female")
    created = await put(storage, "Patient", "p1", [gender])
    deleted = await delete(storage, "Patient", "p1")
    read = await storage.read("Patient", "p1")
    assert read == deleted
    assert read.deleted and read.data == b"" and read.version == 2 and read.method == "DELETE"
    assert await storage.vread("Patient", "p1", 1) == created
    assert (await storage.vread("Patient", "p1", 2)).deleted
    history = await storage.history(HistoryQuery("Patient", "p1"))
    assert versions(history.resources) == [("p1", 2), ("p1", 1)]
    female = TokenCondition("gender", None, "female")
    assert await found(storage, female, types=("Patient",)) == set()
    assert await found(storage, types=("Patient",)) == set()
    assert await found(storage, IdCondition(("p1",)), types=()) == set()


async def test_recreate_after_delete_continues_the_version_count(storage: Storage) -> None:
    await put(storage, "Patient", "p1", [TokenValue("gender", None, "female")])
    await delete(storage, "Patient", "p1")
    again = await put(storage, "Patient", "p1", [TokenValue("gender", None, "male")])
    assert again.version == 3
    assert await storage.read("Patient", "p1") == again
    male, female = TokenCondition("gender", None, "male"), TokenCondition("gender", None, "female")
    assert await found(storage, male, types=("Patient",)) == {"p1"}
    assert await found(storage, female, types=("Patient",)) == set()


async def test_an_update_replaces_the_index_values(storage: Storage) -> None:
    await put(storage, "Patient", "p1", [StringValue("name", "anna", "Anna")])
    await put(storage, "Patient", "p1", [StringValue("name", "berta", "Berta")])
    name = StringCondition("name", "anna")
    assert await found(storage, name, types=("Patient",)) == set()
    assert await found(storage, StringCondition("name", "ber"), types=("Patient",)) == {"p1"}


# -- transactions ----------------------------------------------------------------------


async def test_own_writes_are_visible_inside_and_hidden_outside_until_commit(
    storage: Storage,
) -> None:
    code = TokenCondition("code", None, "x")
    async with storage.transaction() as tx:
        rec = await put_in(tx, "Obs", "o1", [TokenValue("code", None, "x")])
        assert await tx.read("Obs", "o1") == rec
        inside = await tx.search(SearchQuery(("Obs",), ((code,),)))
        assert [r.id for r in inside.resources] == ["o1"] and inside.total == 1
        assert await storage.read("Obs", "o1") is None
        assert await found(storage, code) == set()
        assert (await storage.history(HistoryQuery())).resources == []
    assert await storage.read("Obs", "o1") == rec
    assert await found(storage, code) == {"o1"}


async def test_an_exception_rolls_everything_back(storage: Storage) -> None:
    await put(storage, "Obs", "kept")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with storage.transaction() as tx:
            await put_in(tx, "Obs", "o1", [TokenValue("code", None, "x")])
            await put_in(tx, "Obs", "kept", [TokenValue("code", None, "x")])
            raise Boom
    assert await storage.read("Obs", "o1") is None
    assert (await storage.read("Obs", "kept")).version == 1
    assert await found(storage, TokenCondition("code", None, "x")) == set()
    assert (await storage.history(HistoryQuery())).total == 1


async def test_a_version_conflict_rolls_back_the_earlier_writes(storage: Storage) -> None:
    await put(storage, "Obs", "exists")
    with pytest.raises(VersionConflict):
        async with storage.transaction() as tx:
            await put_in(tx, "Obs", "new")
            rec = StoredResource("Obs", "exists", 1, now(), False, b"{}", "POST")
            await tx.write(rec, (), expected_version=0)
    assert await storage.read("Obs", "new") is None


async def test_a_transaction_of_ten_thousand_writes(storage: Storage) -> None:
    async with storage.transaction() as tx:
        for n in range(10_000):
            rec = StoredResource("Obs", f"o{n}", 1, now(), False, body("Obs", f"o{n}", 1), "POST")
            await tx.write(rec, [TokenValue("code", "s", "bulk")], expected_version=0)
    page = await storage.search(
        SearchQuery(("Obs",), ((TokenCondition("code", "s", "bulk"),),), count=5)
    )
    assert page.total == 10_000
    assert [r.id for r in page.resources] == ["o0", "o1", "o2", "o3", "o4"]
    assert (await storage.read("Obs", "o9999")).version == 1


async def test_lock_serializes_conditional_creates(storage: Storage) -> None:
    identifier = TokenValue("identifier", "urn:mrn", "42")
    criteria = SearchQuery(("Patient",), ((TokenCondition("identifier", "urn:mrn", "42"),),))

    async def create_if_none_exist(id: str) -> None:
        async with storage.transaction() as tx:
            await tx.lock("create:Patient?identifier=urn:mrn|42")
            existing = await tx.search(criteria)
            await asyncio.sleep(0)  # a window for the other task, were it not serialized
            if not existing.resources:
                await put_in(tx, "Patient", id, [identifier])

    await asyncio.gather(create_if_none_exist("a"), create_if_none_exist("b"))
    assert len(await found(storage, criteria.clauses[0], types=("Patient",))) == 1


# -- history ---------------------------------------------------------------------------


async def history_fixture(storage: Storage) -> None:
    """a1@t1, b1@t2, a2@t3, o1@t4, a3 (deleted)@t5, o2@t6."""
    await put(storage, "Patient", "a", at=instant(1))
    await put(storage, "Patient", "b", at=instant(2))
    await put(storage, "Patient", "a", at=instant(3))
    await put(storage, "Observation", "o", at=instant(4))
    await delete(storage, "Patient", "a", at=instant(5))
    await put(storage, "Observation", "o", at=instant(6))


SYSTEM = [("o", 2), ("a", 3), ("o", 1), ("a", 2), ("b", 1), ("a", 1)]


async def test_history_at_three_levels_newest_first(storage: Storage) -> None:
    await history_fixture(storage)
    system = await storage.history(HistoryQuery())
    assert versions(system.resources) == SYSTEM and system.total == 6
    patients = await storage.history(HistoryQuery("Patient"))
    assert versions(patients.resources) == [("a", 3), ("a", 2), ("b", 1), ("a", 1)]
    assert patients.total == 4
    instance = await storage.history(HistoryQuery("Patient", "a"))
    assert versions(instance.resources) == [("a", 3), ("a", 2), ("a", 1)]
    assert instance.resources[0].deleted and instance.resources[0].method == "DELETE"
    assert [r.type for r in system.resources] == [
        "Observation",
        "Patient",
        "Observation",
        "Patient",
        "Patient",
        "Patient",
    ]


async def test_history_returns_each_version_as_stored(storage: Storage) -> None:
    await history_fixture(storage)
    instance = await storage.history(HistoryQuery("Observation", "o"))
    assert instance.resources == [
        await storage.vread("Observation", "o", 2),
        await storage.vread("Observation", "o", 1),
    ]
    assert instance.resources[1].last_updated == instant(4)


async def test_history_since_is_inclusive(storage: Storage) -> None:
    await history_fixture(storage)
    page = await storage.history(HistoryQuery(since=instant(3)))
    assert versions(page.resources) == SYSTEM[:4] and page.total == 4
    page = await storage.history(HistoryQuery("Patient", since=instant(3)))
    assert versions(page.resources) == [("a", 3), ("a", 2)]
    page = await storage.history(HistoryQuery("Patient", "b", since=instant(3)))
    assert page.resources == [] and page.total == 0


async def test_history_at_gives_the_version_current_then(storage: Storage) -> None:
    await history_fixture(storage)
    page = await storage.history(HistoryQuery(at=instant(4)))
    assert versions(page.resources) == [("o", 1), ("a", 2), ("b", 1)] and page.total == 3
    page = await storage.history(HistoryQuery(at=instant(3.5)))
    assert versions(page.resources) == [("a", 2), ("b", 1)]
    page = await storage.history(HistoryQuery("Patient", at=instant(5)))
    # The deletion is the version current at t5: history reports it, as a deletion.
    assert versions(page.resources) == [("a", 3), ("b", 1)] and page.resources[0].deleted
    page = await storage.history(HistoryQuery("Patient", "a", at=instant(2)))
    assert versions(page.resources) == [("a", 1)]
    assert (await storage.history(HistoryQuery(at=instant(0.5)))).resources == []


async def test_history_count_offset_and_total(storage: Storage) -> None:
    await history_fixture(storage)
    page = await storage.history(HistoryQuery(count=2, offset=1))
    assert versions(page.resources) == SYSTEM[1:3] and page.total == 6
    page = await storage.history(HistoryQuery("Patient", count=3, offset=3))
    assert versions(page.resources) == [("a", 1)] and page.total == 4
    page = await storage.history(HistoryQuery(count=2, offset=10))
    assert page.resources == [] and page.total == 6


async def test_history_orders_equal_instants_by_version_descending(storage: Storage) -> None:
    await put(storage, "Patient", "x", at=instant(1))
    await put(storage, "Patient", "y", at=instant(2))
    await put(storage, "Patient", "x", at=instant(2))
    page = await storage.history(HistoryQuery("Patient"))
    assert versions(page.resources) == [("x", 2), ("y", 1), ("x", 1)]


async def test_history_of_an_unknown_instance_is_empty(storage: Storage) -> None:
    await history_fixture(storage)
    page = await storage.history(HistoryQuery("Patient", "zzz"))
    assert page.resources == [] and page.total == 0


# -- search: tokens --------------------------------------------------------------------

LOINC = "http://loinc.org"


async def token_fixture(storage: Storage) -> None:
    await put(
        storage,
        "Obs",
        "o1",
        [TokenValue("code", LOINC, "1234-5"), TokenValue("code", "http://snomed.info/sct", "111")],
    )
    await put(storage, "Obs", "o2", [TokenValue("code", LOINC, "9999-9")])
    await put(storage, "Obs", "o3", [TokenValue("code", None, "1234-5")])
    await put(storage, "Obs", "o4", [TokenValue("status", None, "final")])
    await put(storage, "Condition", "c1", [TokenValue("code", LOINC, "1234-5")])


@pytest.mark.parametrize(
    ("system", "code", "negate", "expected"),
    [
        (None, "1234-5", False, {"o1", "o3"}),  # code: any system
        (LOINC, "1234-5", False, {"o1"}),  # system|code
        ("", "1234-5", False, {"o3"}),  # |code: no system
        (LOINC, None, False, {"o1", "o2"}),  # system|: any code
        ("http://snomed.info/sct", "1234-5", False, set()),
        (None, "unknown", False, set()),
        (LOINC, "1234-5", True, {"o2", "o3", "o4"}),  # :not, including o4 with no code
        (None, "1234-5", True, {"o2", "o4"}),
        ("", "1234-5", True, {"o1", "o2", "o4"}),
    ],
)
async def test_token(storage: Storage, system, code, negate, expected) -> None:
    await token_fixture(storage)
    assert await found(storage, TokenCondition("code", system, code, negate)) == expected


async def test_token_matches_only_its_parameter_and_type(storage: Storage) -> None:
    await token_fixture(storage)
    assert await found(storage, TokenCondition("status", None, "1234-5")) == set()
    found_conditions = await found(
        storage, TokenCondition("code", None, "1234-5"), types=("Condition",)
    )
    assert found_conditions == {"c1"}


# -- search: strings -------------------------------------------------------------------


async def string_fixture(storage: Storage) -> None:
    """Values are normalized as StringValue.value says: accents stripped, case folded."""
    await put(
        storage,
        "Obs",
        "s1",
        [StringValue("name", "muller", "Müller"), StringValue("name", "anna", "Anna")],
    )
    await put(storage, "Obs", "s2", [StringValue("name", "mullerson", "Mullerson")])
    await put(
        storage,
        "Obs",
        "s3",
        [StringValue("name", "schmidt", "Schmidt"), StringValue("name", "annamaria", "AnnaMaria")],
    )
    await put(storage, "Obs", "s4", [StringValue("name", "100%_sure", "100%_Sure")])
    await put(storage, "Obs", "s5", [StringValue("alias", "muller", "Muller")])


@pytest.mark.parametrize(
    ("value", "mode", "expected"),
    [
        ("mul", "start", {"s1", "s2"}),
        ("muller", "start", {"s1", "s2"}),
        ("mullers", "start", {"s2"}),
        ("ann", "start", {"s1", "s3"}),
        ("nna", "start", set()),
        ("100%", "start", {"s4"}),
        ("10_", "start", set()),  # no wildcards: % and _ are plain characters
        ("ller", "contains", {"s1", "s2"}),
        ("mid", "contains", {"s3"}),
        ("%_s", "contains", {"s4"}),
        ("x%", "contains", set()),
        ("Müller", "exact", {"s1"}),
        ("Muller", "exact", set()),
        ("müller", "exact", set()),
        ("AnnaMaria", "exact", {"s3"}),
        ("Anna", "exact", {"s1"}),
    ],
)
async def test_string(storage: Storage, value, mode, expected) -> None:
    await string_fixture(storage)
    assert await found(storage, StringCondition("name", value, mode)) == expected


# -- search: references ----------------------------------------------------------------


async def reference_fixture(storage: Storage) -> None:
    await put(storage, "Obs", "r1", [ReferenceValue("subject", "Patient", "p1")])
    await put(storage, "Obs", "r2", [ReferenceValue("subject", "Patient", "p2")])
    await put(storage, "Obs", "r3", [ReferenceValue("subject", "Group", "p1")])
    await put(
        storage,
        "Obs",
        "r4",
        [ReferenceValue("subject", None, None, url="http://other.org/fhir/Patient/9")],
    )
    await put(
        storage,
        "Obs",
        "r5",
        [
            ReferenceValue(
                "instantiates", None, None, url="http://x.org/Questionnaire/q", version="2"
            )
        ],
    )
    await put(storage, "Obs", "r6", [ReferenceValue("performer", "Patient", "p1")])


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (ReferenceCondition("subject", "Patient", "p1"), {"r1"}),
        (ReferenceCondition("subject", None, "p1"), {"r1", "r3"}),  # any target type
        (ReferenceCondition("subject", "Group", "p2"), set()),
        (ReferenceCondition("subject", url="http://other.org/fhir/Patient/9"), {"r4"}),
        (ReferenceCondition("subject", url="http://other.org/fhir/Patient"), set()),
        (ReferenceCondition("instantiates", url="http://x.org/Questionnaire/q"), {"r5"}),
        (
            ReferenceCondition("instantiates", url="http://x.org/Questionnaire/q", version="2"),
            {"r5"},
        ),
        (
            ReferenceCondition("instantiates", url="http://x.org/Questionnaire/q", version="3"),
            set(),
        ),
    ],
)
async def test_reference(storage: Storage, condition, expected) -> None:
    await reference_fixture(storage)
    assert await found(storage, condition) == expected


# -- search: dates, numbers, quantities (prefixes on ranges) ----------------------------

DAY_END = "T23:59:59.999999Z"
MARCH = ("2020-03-01T00:00:00.000000Z", "2020-03-31" + DAY_END)  # the search value 2020-03

DATES = {
    "before": [("2020-01-01T00:00:00.000000Z", "2020-01-31" + DAY_END)],
    "overlaps_start": [("2020-02-15T00:00:00.000000Z", "2020-03-10" + DAY_END)],
    "inside": [("2020-03-05T00:00:00.000000Z", "2020-03-05" + DAY_END)],
    "same": [MARCH],
    "overlaps_end": [("2020-03-20T00:00:00.000000Z", "2020-04-10" + DAY_END)],
    "after": [("2020-05-01T00:00:00.000000Z", "2020-05-31" + DAY_END)],
    "wide": [("2020-01-01T00:00:00.000000Z", "2020-12-31" + DAY_END)],
    "multi": [
        ("2020-01-01T00:00:00.000000Z", "2020-01-31" + DAY_END),
        ("2020-03-05T00:00:00.000000Z", "2020-03-05" + DAY_END),
    ],
}

# By hand from https://hl7.org/fhir/R4/search.html#prefix, for the search value 2020-03.
# A resource matches when any of its values does ("multi" has one before and one inside).
DATE_EXPECTED = {
    "eq": {"inside", "same", "multi"},  # the search range contains the value
    "ne": {"before", "overlaps_start", "overlaps_end", "after", "wide", "multi"},
    "gt": {"overlaps_end", "after", "wide"},  # the value reaches past the range's end
    "lt": {"before", "overlaps_start", "wide", "multi"},  # it starts before the range
    "ge": {"overlaps_end", "after", "wide", "inside", "same", "multi"},
    "le": {"before", "overlaps_start", "wide", "inside", "same", "multi"},
    "sa": {"after"},  # it starts after the range ends
    "eb": {"before", "multi"},  # it ends before the range starts
    "ap": {"overlaps_start", "inside", "same", "overlaps_end", "wide", "multi"},
}


def reference_matches(values: dict[str, Any], prefix: Prefix, low, high) -> set[str]:
    return {
        name
        for name, ranges in values.items()
        if any(range_matches(prefix, low, high, lo, hi) for lo, hi in ranges)
    }


@pytest.mark.parametrize("prefix", list(DATE_EXPECTED))
def test_date_expectations_agree_with_range_matches(prefix) -> None:
    assert reference_matches(DATES, prefix, *MARCH) == DATE_EXPECTED[prefix]


@pytest.mark.parametrize("prefix", list(DATE_EXPECTED))
async def test_date(storage: Storage, prefix) -> None:
    for name, ranges in DATES.items():
        await put(storage, "Obs", name, [DateValue("date", lo, hi) for lo, hi in ranges])
    await put(storage, "Obs", "other-param", [DateValue("issued", *MARCH)])
    got = await found(storage, DateCondition("date", prefix, *MARCH))
    assert got == DATE_EXPECTED[prefix]


TEN = (9.5, 10.5)  # the search value 10 at its implicit precision
NUMBERS = {
    "five": [(4.95, 5.05)],
    "ten": [(9.5, 10.5)],
    "exactly_ten": [(10.0, 10.0)],
    "hundred": [(99.5, 100.5)],
    "negative": [(-2.5, -2.5)],
    "straddles": [(10.4, 10.6)],
}
NUMBER_EXPECTED = {
    "eq": {"ten", "exactly_ten"},
    "ne": {"five", "hundred", "negative", "straddles"},
    "gt": {"hundred", "straddles"},
    "lt": {"five", "negative"},
    "ge": {"ten", "exactly_ten", "hundred", "straddles"},
    "le": {"five", "negative", "ten", "exactly_ten"},
    "sa": {"hundred"},
    "eb": {"five", "negative"},
    "ap": {"ten", "exactly_ten", "straddles"},
}


@pytest.mark.parametrize("prefix", list(NUMBER_EXPECTED))
def test_number_expectations_agree_with_range_matches(prefix) -> None:
    assert reference_matches(NUMBERS, prefix, *TEN) == NUMBER_EXPECTED[prefix]


@pytest.mark.parametrize("prefix", list(NUMBER_EXPECTED))
async def test_number(storage: Storage, prefix) -> None:
    for name, ranges in NUMBERS.items():
        await put(storage, "Obs", name, [NumberValue("probability", lo, hi) for lo, hi in ranges])
    got = await found(storage, NumberCondition("probability", prefix, *TEN))
    assert got == NUMBER_EXPECTED[prefix]


UCUM = "http://unitsofmeasure.org"


async def quantity_fixture(storage: Storage) -> None:
    await put(storage, "Obs", "q1", [QuantityValue("value", 5.35, 5.45, UCUM, "mg", "mg")])
    await put(storage, "Obs", "q2", [QuantityValue("value", 5.35, 5.45, UCUM, "g", "gram")])
    await put(storage, "Obs", "q3", [QuantityValue("value", 10.0, 10.0, UCUM, "mg", "mg")])
    await put(storage, "Obs", "q4", [QuantityValue("value", 5.4, 5.4, "http://other", "mg")])
    await put(storage, "Obs", "q5", [QuantityValue("value", 5.4, 5.4, None, None, "lbs")])


@pytest.mark.parametrize(
    ("prefix", "system", "code", "expected"),
    [
        ("eq", None, None, {"q1", "q2", "q4", "q5"}),  # 5.4: any unit
        ("eq", UCUM, "mg", {"q1"}),  # 5.4|http://unitsofmeasure.org|mg
        ("eq", None, "mg", {"q1", "q4"}),  # 5.4||mg: any system
        ("eq", UCUM, None, {"q1", "q2"}),
        ("gt", None, "mg", {"q3"}),
        ("lt", UCUM, "mg", set()),
        ("ne", UCUM, "mg", {"q3"}),
        ("ap", None, None, {"q1", "q2", "q4", "q5"}),
    ],
)
async def test_quantity(storage: Storage, prefix, system, code, expected) -> None:
    await quantity_fixture(storage)
    condition = QuantityCondition("value", prefix, 5.35, 5.45, system, code)
    assert await found(storage, condition) == expected


# -- search: uri, missing, _id, _lastUpdated --------------------------------------------

ACME = "http://acme.org/fhir"


@pytest.mark.parametrize(
    ("uri", "mode", "expected"),
    [
        (f"{ACME}/ValueSet/123", "eq", {"u1"}),
        (f"{ACME}/ValueSet/12", "eq", set()),
        (f"{ACME}/ValueSet/123", "below", {"u1", "u2"}),  # prefix of the indexed uri
        (ACME, "below", {"u1", "u2", "u3"}),
        ("urn:", "below", {"u4"}),
        (f"{ACME}/ValueSet/123/_history/5", "above", {"u1", "u3"}),  # indexed uri is a prefix
        (f"{ACME}/ValueSet/1234", "above", {"u1", "u2", "u3"}),
        ("http://other.org", "above", set()),
    ],
)
async def test_uri(storage: Storage, uri, mode, expected) -> None:
    await put(storage, "Obs", "u1", [UriValue("url", f"{ACME}/ValueSet/123")])
    await put(storage, "Obs", "u2", [UriValue("url", f"{ACME}/ValueSet/1234")])
    await put(storage, "Obs", "u3", [UriValue("url", ACME)])
    await put(storage, "Obs", "u4", [UriValue("url", "urn:oid:1.2.3")])
    assert await found(storage, UriCondition("url", uri, mode)) == expected


@pytest.mark.parametrize(
    ("param", "kind", "with_value"),
    [
        ("code", "token", TokenValue("code", None, "x")),
        ("name", "string", StringValue("name", "x", "X")),
        ("subject", "reference", ReferenceValue("subject", "Patient", "p")),
        ("date", "date", DateValue("date", *MARCH)),
        ("probability", "number", NumberValue("probability", 1.0, 1.0)),
        ("value", "quantity", QuantityValue("value", 1.0, 1.0, None, None)),
        ("url", "uri", UriValue("url", "urn:x")),
    ],
)
async def test_missing(storage: Storage, param, kind, with_value) -> None:
    await put(storage, "Obs", "has", [with_value])
    await put(storage, "Obs", "lacks", [TokenValue("other", None, "x")])
    await put(storage, "Obs", "bare")
    assert await found(storage, MissingCondition(param, kind, True)) == {"lacks", "bare"}
    assert await found(storage, MissingCondition(param, kind, False)) == {"has"}


async def test_id(storage: Storage) -> None:
    for id in ("a", "b", "c"):
        await put(storage, "Obs", id)
    await put(storage, "Patient", "a")
    await delete(storage, "Obs", "c")
    assert await found(storage, IdCondition(("a", "c", "zz"))) == {"a"}
    system = await storage.search(SearchQuery((), ((IdCondition(("a",)),),)))
    assert sorted(r.type for r in system.resources) == ["Obs", "Patient"]


T2 = (instant(2), instant(2.999999))  # the search value: the second 2
LAST_UPDATED = {"t1": instant(1), "t2": instant(2), "t2.5": instant(2.5), "t3": instant(3)}
LAST_UPDATED_EXPECTED = {
    "eq": {"t2", "t2.5"},
    "ap": {"t2", "t2.5"},
    "ne": {"t1", "t3"},
    "gt": {"t3"},
    "sa": {"t3"},
    "lt": {"t1"},
    "eb": {"t1"},
    "ge": {"t2", "t2.5", "t3"},
    "le": {"t1", "t2", "t2.5"},
}


@pytest.mark.parametrize("prefix", list(LAST_UPDATED_EXPECTED))
async def test_last_updated(storage: Storage, prefix) -> None:
    points = {name: [(t, t)] for name, t in LAST_UPDATED.items()}
    assert reference_matches(points, prefix, *T2) == LAST_UPDATED_EXPECTED[prefix]
    for name, at in LAST_UPDATED.items():
        await put(storage, "Obs", name, at=at)
    condition = LastUpdatedCondition(prefix, *T2)
    assert await found(storage, condition) == LAST_UPDATED_EXPECTED[prefix]
    assert await found(storage, condition, types=()) == LAST_UPDATED_EXPECTED[prefix]


# -- search: clauses, types, sorting, paging -------------------------------------------


async def combination_fixture(storage: Storage) -> None:
    await put(storage, "Obs", "a", [TokenValue("code", None, "x"), StringValue("name", "al", "Al")])
    await put(storage, "Obs", "b", [TokenValue("code", None, "x"), StringValue("name", "bo", "Bo")])
    await put(storage, "Obs", "c", [TokenValue("code", None, "y"), StringValue("name", "al", "Al")])
    await put(storage, "Obs", "d", [TokenValue("code", None, "z")])


async def test_clauses_are_anded(storage: Storage) -> None:
    await combination_fixture(storage)
    code_x, name_al = TokenCondition("code", None, "x"), StringCondition("name", "al")
    assert await found(storage, code_x, name_al) == {"a"}
    assert await found(storage, code_x, StringCondition("name", "zz")) == set()


async def test_conditions_in_a_clause_are_ored(storage: Storage) -> None:
    await combination_fixture(storage)
    either = (TokenCondition("code", None, "y"), StringCondition("name", "bo"))
    assert await found(storage, either) == {"b", "c"}
    with_not = (TokenCondition("code", None, "z"), TokenCondition("code", None, "x", negate=True))
    assert await found(storage, with_not) == {"c", "d"}
    with_id = (IdCondition(("d",)), StringCondition("name", "al"))
    assert await found(storage, with_id) == {"a", "c", "d"}
    assert await found(storage, with_id, TokenCondition("code", None, "x")) == {"a"}


async def test_types_empty_searches_every_type_and_several_types_work(storage: Storage) -> None:
    await put(storage, "Patient", "p", [TokenValue("_tag", "s", "t")])
    await put(storage, "Obs", "o", [TokenValue("_tag", "s", "t")])
    await put(storage, "Condition", "c", [TokenValue("_tag", "s", "t")])
    tag = TokenCondition("_tag", "s", "t")
    assert await found(storage, tag, types=()) == {"p", "o", "c"}
    assert await found(storage, tag, types=("Patient", "Obs")) == {"p", "o"}
    assert await found(storage, types=()) == {"p", "o", "c"}


def ids_of(page) -> list[str]:
    return [r.id for r in page.resources]


async def test_default_order_is_insertion_order_and_updates_keep_their_place(
    storage: Storage,
) -> None:
    for id in ("m", "z", "a"):
        await put(storage, "Obs", id)
    await put(storage, "Obs", "m")
    assert ids_of(await storage.search(SearchQuery(("Obs",)))) == ["m", "z", "a"]


async def test_sort_by_id_and_last_updated(storage: Storage) -> None:
    await put(storage, "Obs", "b", at=instant(3), index=[TokenValue("code", None, "x")])
    await put(storage, "Obs", "c", at=instant(1), index=[TokenValue("code", None, "x")])
    await put(storage, "Obs", "a", at=instant(2), index=[TokenValue("code", None, "x")])

    async def order(*keys: SortKey, clauses=()) -> list[str]:
        return ids_of(await storage.search(SearchQuery(("Obs",), clauses, sort=keys)))

    assert await order(SortKey("_id")) == ["a", "b", "c"]
    assert await order(SortKey("_id", descending=True)) == ["c", "b", "a"]
    assert await order(SortKey("_lastUpdated")) == ["c", "a", "b"]
    assert await order(SortKey("_lastUpdated", descending=True)) == ["b", "a", "c"]
    code = ((TokenCondition("code", None, "x"),),)
    assert await order(SortKey("_lastUpdated", descending=True), clauses=code) == ["b", "a", "c"]
    assert await order(SortKey("_id"), clauses=code) == ["a", "b", "c"]


async def test_ties_are_broken_by_insertion_order(storage: Storage) -> None:
    same = instant(5)
    for id in ("n2", "n1", "n3"):
        await put(storage, "Obs", id, at=same)
    await put(storage, "Obs", "n0", at=instant(6))
    by_time = SortKey("_lastUpdated", descending=True)
    assert ids_of(await storage.search(SearchQuery(("Obs",), sort=(by_time,)))) == [
        "n0",
        "n2",
        "n1",
        "n3",
    ]
    two_keys = (SortKey("_lastUpdated"), SortKey("_id", descending=True))
    assert ids_of(await storage.search(SearchQuery(("Obs",), sort=two_keys))) == [
        "n3",
        "n2",
        "n1",
        "n0",
    ]
    await put(storage, "Patient", "n1", at=instant(7))
    by_id = SearchQuery((), ((IdCondition(("n1",)),),), sort=(SortKey("_id"),))
    system = await storage.search(by_id)
    assert [r.type for r in system.resources] == ["Obs", "Patient"]


async def test_count_offset_and_total(storage: Storage) -> None:
    for n in range(5):
        await put(storage, "Obs", f"o{n}")

    async def page(**kw) -> tuple[list[str], int | None]:
        result = await storage.search(SearchQuery(("Obs",), **kw))
        return ids_of(result), result.total

    assert await page(count=2) == (["o0", "o1"], 5)
    assert await page(count=2, offset=2) == (["o2", "o3"], 5)
    assert await page(count=2, offset=4) == (["o4"], 5)
    assert await page(count=2, offset=9) == ([], 5)
    assert await page(count=2, total="none") == (["o0", "o1"], None)
    assert await page(count=0) == ([], 5)
    ids, estimate = await page(count=2, total="estimate")
    assert ids == ["o0", "o1"] and isinstance(estimate, int)


async def test_search_returns_current_versions_as_stored(storage: Storage) -> None:
    await put(storage, "Obs", "o", [TokenValue("code", None, "x")])
    second = await put(storage, "Obs", "o", [TokenValue("code", None, "x")])
    page = await storage.search(SearchQuery(("Obs",), ((TokenCondition("code", None, "x"),),)))
    assert page.resources == [second]


# -- streaming -------------------------------------------------------------------------


async def test_iter_current_streams_only_current_live_resources(storage: Storage) -> None:
    async with storage.transaction() as tx:
        for n in range(1200):
            await put_in(tx, "Patient", f"p{n:04}")
        await put_in(tx, "Observation", "o")
    updated = await put(storage, "Patient", "p0001")
    await delete(storage, "Patient", "p0002")
    streamed = [r async for r in storage.iter_current("Patient")]
    assert len(streamed) == 1199
    assert {r.type for r in streamed} == {"Patient"}
    assert "p0002" not in {r.id for r in streamed}
    assert [r for r in streamed if r.id == "p0001"] == [updated]
    assert [r async for r in storage.iter_current("Encounter")] == []
