"""The MongoDB engine on the mongomock adapter: indexes, query shapes, each condition kind,
versioning, transactions and locks. What only a real server shows is in the contract run
with FHIR_TEST_MONGODB_URL (see tests/support/mongo_engines.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest
from pymongo.errors import OperationFailure

from fhir_server.errors import BadRequest, VersionConflict
from fhir_server.search.conditions import (
    Condition,
    DateCondition,
    IdCondition,
    LastUpdatedCondition,
    MissingCondition,
    NumberCondition,
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
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.storage.base import HistoryQuery, StoredResource
from fhir_server.storage.mongodb import (
    MongoStorage,
    TransactionConflict,
    TransactionsUnavailable,
    search_filter,
)
from tests.support.mongomock_async import MockClient, mock_database


def instant(day: int, second: int = 0) -> str:
    return f"2024-01-{day:02d}T00:00:{second:02d}.000000Z"


@pytest.fixture
async def storage() -> AsyncIterator[MongoStorage]:
    engine = MongoStorage(cast(Any, mock_database()))
    await engine.open()
    yield engine
    await engine.close()


async def put(
    storage: MongoStorage,
    type: str,
    id: str,
    index: Sequence[IndexValue] = (),
    *,
    version: int = 1,
    updated: str = instant(1),
    deleted: bool = False,
) -> StoredResource:
    data = b"" if deleted else b'{"resourceType":"%s","id":"%s"}' % (type.encode(), id.encode())
    rec = StoredResource(type, id, version, updated, deleted, data, "DELETE" if deleted else "PUT")
    async with storage.transaction() as tx:
        await tx.write(rec, index, expected_version=version - 1)
    return rec


async def ids(
    storage: MongoStorage,
    *clauses: tuple[Condition, ...],
    types: tuple[str, ...] = ("Observation",),
    **options: Any,
) -> list[str]:
    page = await storage.search(SearchQuery(types, tuple(clauses), **options))
    return [r.id for r in page.resources]


# -- indexes and query shapes ---------------------------------------------------------


async def test_open_creates_the_search_and_history_indexes(storage: MongoStorage) -> None:
    db = storage._db
    resources = await db["resources"].index_information()
    assert {
        "type_tok.p_tok.c_tok.s",
        "type_str.p_str.v",
        "type_ref.p_ref.i_ref.t",
        "type_dt.p_dt.lo_dt.hi",
        "type_qty.p_qty.c_qty.lo_qty.hi",
        "type_uri.p_uri.u",
        "type_deleted_seq",
        "type_deleted_last_updated_seq",
    } <= set(resources)
    assert list(resources["type_tok.p_tok.c_tok.s"]["key"]) == [
        ("type", 1),
        ("tok.p", 1),
        ("tok.c", 1),
        ("tok.s", 1),
    ]
    history = await db["history"].index_information()
    assert "type_id_last_updated_version_seq" in history
    assert list(history["type_id_version_desc"]["key"]) == [("type", 1), ("id", 1), ("version", -1)]
    locks = await db["locks"].index_information()
    assert locks["claimed_at"]["expireAfterSeconds"] > 0


async def test_open_is_idempotent(storage: MongoStorage) -> None:
    before = await storage._db["resources"].index_information()
    await storage.open()
    assert await storage._db["resources"].index_information() == before


async def test_open_refuses_a_standalone_server() -> None:
    db = mock_database()

    async def standalone(command: str | dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {"isWritablePrimary": True, "ok": 1.0}  # no setName: not a replica set

    db.command = standalone  # type: ignore[method-assign]
    with pytest.raises(TransactionsUnavailable, match="replica set"):
        await MongoStorage(cast(Any, db)).open()


def test_conditions_match_parameter_and_value_in_one_element() -> None:
    query = SearchQuery(
        ("Observation",),
        (
            (TokenCondition("code", "http://loinc.org", "1234-5"),),
            (DateCondition("date", "ge", "2024-01-01", "2024-01-02"),),
        ),
    )
    assert search_filter(query, query.types) == {
        "deleted": False,
        "type": "Observation",
        "$and": [
            {"tok": {"$elemMatch": {"p": "code", "c": "1234-5", "s": "http://loinc.org"}}},
            {
                "$or": [
                    {"dt": {"$elemMatch": {"p": "date", "hi": {"$gt": "2024-01-02"}}}},
                    {
                        "dt": {
                            "$elemMatch": {
                                "p": "date",
                                "lo": {"$gte": "2024-01-01", "$lte": "2024-01-02"},
                                "hi": {"$lte": "2024-01-02"},
                            }
                        }
                    },
                ]
            },
        ],
    }


def test_or_within_a_clause_and_a_prefix_as_an_index_range() -> None:
    query = SearchQuery(
        ("Patient", "Practitioner"),
        ((StringCondition("name", "smi"), StringCondition("name", "jo")),),
    )
    assert search_filter(query, query.types) == {
        "deleted": False,
        "type": {"$in": ["Patient", "Practitioner"]},
        "$and": [
            {
                "$or": [
                    {"str": {"$elemMatch": {"p": "name", "v": {"$gte": "smi", "$lt": "smj"}}}},
                    {"str": {"$elemMatch": {"p": "name", "v": {"$gte": "jo", "$lt": "jp"}}}},
                ]
            }
        ],
    }


def test_negated_token_and_missing_use_not_elem_match() -> None:
    query = SearchQuery(
        ("Observation",),
        (
            (TokenCondition("status", None, "final", negate=True),),
            (MissingCondition("subject", "reference", True),),
        ),
    )
    assert search_filter(query, query.types)["$and"] == [
        {"tok": {"$not": {"$elemMatch": {"p": "status", "c": "final"}}}},
        {"ref": {"$not": {"$elemMatch": {"p": "subject"}}}},
    ]


def test_id_uses_the_primary_key_when_the_types_are_known() -> None:
    query = SearchQuery(("Patient", "Group"), ((IdCondition(("a", "b")),),))
    assert search_filter(query, query.types)["$and"] == [
        {"_id": {"$in": ["Patient/a", "Patient/b", "Group/a", "Group/b"]}}
    ]


# -- every condition kind, against hand-written expectations --------------------------


@pytest.fixture
async def observations(storage: MongoStorage) -> MongoStorage:
    await put(
        storage,
        "Observation",
        "o1",
        [
            TokenValue("code", "http://loinc.org", "1234-5", "Glucose"),
            TokenValue("status", None, "final"),
            StringValue("note", "fasting glucose", "Fasting Glucose"),
            ReferenceValue("subject", "Patient", "p1"),
            DateValue("date", instant(1), instant(1, 59)),
            NumberValue("probability", 0.5, 0.5),
            QuantityValue("value", 5.0, 5.0, "http://unitsofmeasure.org", "mmol/L"),
            UriValue("instantiates", "http://acme.org/fhir/PlanDefinition/1"),
        ],
        updated=instant(1),
    )
    await put(
        storage,
        "Observation",
        "o2",
        [
            TokenValue("code", "http://snomed.info/sct", "1234-5"),
            TokenValue("status", None, "amended"),
            StringValue("note", "glucose (random)", "Glucose (random)"),
            ReferenceValue("subject", "Group", "p1"),
            ReferenceValue("based-on", None, None, "http://other.org/ServiceRequest/9", "2"),
            DateValue("date", "2024-01-01T00:00:00.000000Z", "2024-01-31T23:59:59.999999Z"),
            NumberValue("probability", 0.85, 0.95),
            QuantityValue("value", 90.0, 90.0, "http://unitsofmeasure.org", "mg/dL"),
        ],
        updated=instant(2),
    )
    await put(
        storage,
        "Observation",
        "o3",
        [
            TokenValue("code", None, "local-1"),
            DateValue("date", instant(3), instant(3)),
        ],
        updated=instant(3),
    )
    await put(storage, "Patient", "p1", [StringValue("name", "smith", "Smith")])
    return storage


CASES: list[tuple[str, Condition, list[str]]] = [
    ("token system|code", TokenCondition("code", "http://loinc.org", "1234-5"), ["o1"]),
    ("token code, any system", TokenCondition("code", None, "1234-5"), ["o1", "o2"]),
    ("token |code: no system", TokenCondition("code", "", "local-1"), ["o3"]),
    ("token system|", TokenCondition("code", "http://snomed.info/sct", None), ["o2"]),
    ("token :not", TokenCondition("status", None, "final", negate=True), ["o2", "o3"]),
    ("string start", StringCondition("note", "gluc"), ["o2"]),
    ("string start, empty", StringCondition("note", ""), ["o1", "o2"]),
    ("string contains", StringCondition("note", "gluc", "contains"), ["o1", "o2"]),
    ("string contains regex chars", StringCondition("note", "(random)", "contains"), ["o2"]),
    ("string exact", StringCondition("note", "Fasting Glucose", "exact"), ["o1"]),
    ("string exact is case sensitive", StringCondition("note", "fasting glucose", "exact"), []),
    ("reference Type/id", ReferenceCondition("subject", "Patient", "p1"), ["o1"]),
    ("reference id, any type", ReferenceCondition("subject", None, "p1"), ["o1", "o2"]),
    (
        "reference url",
        ReferenceCondition("based-on", url="http://other.org/ServiceRequest/9"),
        ["o2"],
    ),
    (
        "reference url|version",
        ReferenceCondition("based-on", url="http://other.org/ServiceRequest/9", version="3"),
        [],
    ),
    ("date eq day", DateCondition("date", "eq", instant(1), "2024-01-01T23:59:59.999999Z"), ["o1"]),
    (
        "date ne day",
        DateCondition("date", "ne", instant(1), "2024-01-01T23:59:59.999999Z"),
        ["o2", "o3"],
    ),
    (
        "date gt",
        DateCondition("date", "gt", instant(2), "2024-01-02T23:59:59.999999Z"),
        ["o2", "o3"],
    ),
    (
        "date lt",
        DateCondition("date", "lt", instant(2), "2024-01-02T23:59:59.999999Z"),
        ["o1", "o2"],
    ),
    (
        "date ge",
        DateCondition("date", "ge", instant(3), "2024-01-03T23:59:59.999999Z"),
        ["o2", "o3"],
    ),
    ("date le", DateCondition("date", "le", instant(1), "2024-01-01T23:59:59.999999Z"), ["o1"]),
    (
        "date le, overlapping below",
        DateCondition("date", "le", instant(2), "2024-01-02T23:59:59.999999Z"),
        ["o1", "o2"],
    ),
    ("date sa", DateCondition("date", "sa", instant(2), "2024-01-02T23:59:59.999999Z"), ["o3"]),
    ("date eb", DateCondition("date", "eb", instant(2), "2024-01-02T23:59:59.999999Z"), ["o1"]),
    (
        "date ap",
        DateCondition("date", "ap", instant(3), "2024-01-03T23:59:59.999999Z"),
        ["o2", "o3"],
    ),
    ("number eq", NumberCondition("probability", "eq", 0.45, 0.55), ["o1"]),
    ("number gt", NumberCondition("probability", "gt", 0.9, 0.9), ["o2"]),
    ("number ap", NumberCondition("probability", "ap", 0.9, 0.9), ["o2"]),
    (
        "quantity with unit",
        QuantityCondition("value", "gt", 4.0, 4.0, "http://unitsofmeasure.org", "mmol/L"),
        ["o1"],
    ),
    ("quantity any unit", QuantityCondition("value", "gt", 4.0, 4.0), ["o1", "o2"]),
    ("quantity le", QuantityCondition("value", "le", 5.0, 5.0), ["o1"]),
    ("uri eq", UriCondition("instantiates", "http://acme.org/fhir/PlanDefinition/1"), ["o1"]),
    ("uri below", UriCondition("instantiates", "http://acme.org/fhir/", "below"), ["o1"]),
    (
        "uri above",
        UriCondition("instantiates", "http://acme.org/fhir/PlanDefinition/1/_history/2", "above"),
        ["o1"],
    ),
    ("uri above, not a prefix", UriCondition("instantiates", "http://acme.org/", "above"), []),
    ("missing true", MissingCondition("subject", "reference", True), ["o3"]),
    ("missing false", MissingCondition("subject", "reference", False), ["o1", "o2"]),
    ("_id", IdCondition(("o3", "o1", "p1")), ["o1", "o3"]),
    (
        "_lastUpdated eq",
        LastUpdatedCondition("eq", instant(2), "2024-01-02T23:59:59.999999Z"),
        ["o2"],
    ),
    (
        "_lastUpdated ge",
        LastUpdatedCondition("ge", instant(2), "2024-01-02T23:59:59.999999Z"),
        ["o2", "o3"],
    ),
    (
        "_lastUpdated ne",
        LastUpdatedCondition("ne", instant(2), "2024-01-02T23:59:59.999999Z"),
        ["o1", "o3"],
    ),
    (
        "_lastUpdated lt",
        LastUpdatedCondition("lt", instant(2), "2024-01-02T23:59:59.999999Z"),
        ["o1"],
    ),
]


@pytest.mark.parametrize(
    ("condition", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_condition(
    observations: MongoStorage, condition: Condition, expected: list[str]
) -> None:
    assert await ids(observations, (condition,)) == expected


async def test_or_within_and_across_clauses(observations: MongoStorage) -> None:
    either = (TokenCondition("status", None, "final"), TokenCondition("code", "", "local-1"))
    assert await ids(observations, either) == ["o1", "o3"]
    assert await ids(
        observations, either, (DateCondition("date", "gt", instant(2), instant(2)),)
    ) == ["o3"]


async def test_system_wide_search(observations: MongoStorage) -> None:
    assert await ids(observations, (IdCondition(("o2", "p1")),), types=()) == ["o2", "p1"]
    assert await ids(observations, types=()) == ["o1", "o2", "o3", "p1"]


async def test_unknown_sort_is_a_bad_request(observations: MongoStorage) -> None:
    with pytest.raises(BadRequest):
        await ids(observations, sort=(SortKey("birthdate"),))


# -- paging, sorting, totals ----------------------------------------------------------


async def test_sort_then_insertion_order(storage: MongoStorage) -> None:
    for id, day in (("c", 2), ("a", 1), ("b", 2)):
        await put(storage, "Observation", id, updated=instant(day))
    assert await ids(storage) == ["c", "a", "b"]
    assert await ids(storage, sort=(SortKey("_lastUpdated", descending=True),)) == ["c", "b", "a"]
    assert await ids(storage, sort=(SortKey("_lastUpdated"),)) == ["a", "c", "b"]
    assert await ids(storage, sort=(SortKey("_id", descending=True),)) == ["c", "b", "a"]


async def test_count_offset_and_total(storage: MongoStorage) -> None:
    for n in range(5):
        await put(storage, "Observation", f"o{n}")
    page = await storage.search(SearchQuery(("Observation",), count=2, offset=2))
    assert ([r.id for r in page.resources], page.total) == (["o2", "o3"], 5)
    page = await storage.search(SearchQuery(("Observation",), count=0))
    assert (page.resources, page.total) == ([], 5)
    page = await storage.search(SearchQuery(("Observation",), total="none"))
    assert page.total is None


# -- versions, deletions, history -----------------------------------------------------


async def test_deletion_is_read_but_not_found(storage: MongoStorage) -> None:
    await put(storage, "Patient", "p", [StringValue("name", "x", "X")])
    gone = await put(storage, "Patient", "p", version=2, updated=instant(2), deleted=True)
    assert await storage.read("Patient", "p") == gone
    assert await ids(storage, types=("Patient",)) == []
    assert (
        await ids(storage, (MissingCondition("name", "string", False),), types=("Patient",)) == []
    )
    assert [r async for r in storage.iter_current("Patient")] == []
    again = await put(storage, "Patient", "p", version=3, updated=instant(3))
    assert [r async for r in storage.iter_current("Patient")] == [again]


async def test_history_levels_since_and_at(storage: MongoStorage) -> None:
    await put(storage, "Patient", "a", updated=instant(1))
    await put(storage, "Patient", "b", updated=instant(2))
    await put(storage, "Patient", "a", version=2, updated=instant(3))
    await put(storage, "Observation", "o", updated=instant(4))
    await put(storage, "Patient", "a", version=3, updated=instant(5), deleted=True)

    async def versions(**q: Any) -> tuple[list[str], int | None]:
        page = await storage.history(HistoryQuery(**q))
        return [f"{r.type}/{r.id}/{r.version}" for r in page.resources], page.total

    assert await versions(type="Patient", id="a") == (
        ["Patient/a/3", "Patient/a/2", "Patient/a/1"],
        3,
    )
    assert await versions(type="Patient", count=2) == (["Patient/a/3", "Patient/a/2"], 4)
    assert (await versions())[1] == 5
    assert await versions(since=instant(3), count=2, offset=1) == (
        ["Observation/o/1", "Patient/a/2"],
        3,
    )
    assert await versions(type="Patient", at=instant(4)) == (["Patient/a/2", "Patient/b/1"], 2)
    assert await versions(at=instant(4), since=instant(2, 30)) == (
        ["Observation/o/1", "Patient/a/2"],
        2,
    )
    assert await versions(type="Patient", id="zzz") == ([], 0)
    assert (await storage.vread("Patient", "a", 2)) is not None
    assert (await storage.vread("Patient", "a", 9)) is None


# -- concurrency and transactions -----------------------------------------------------


async def test_write_needs_the_expected_version(storage: MongoStorage) -> None:
    await put(storage, "Patient", "p")
    with pytest.raises(VersionConflict) as raised:
        await put(storage, "Patient", "p")  # expected 0, but it exists
    assert (raised.value.type, raised.value.id) == ("Patient", "p")
    with pytest.raises(VersionConflict) as raised:
        await put(storage, "Patient", "p", version=4)  # expected 3, current 1
    assert raised.value.actual == 1
    assert (await storage.read("Patient", "p")).version == 1
    assert (await storage.history(HistoryQuery("Patient", "p"))).total == 1


async def test_two_writers_of_the_same_version_one_wins(storage: MongoStorage) -> None:
    await put(storage, "Patient", "p")
    started = asyncio.Event()

    async def writer(n: int) -> str:
        rec = StoredResource("Patient", "p", 2, instant(2), False, b'{"n":%d}' % n, "PUT")
        try:
            async with storage.transaction() as tx:
                await tx.read("Patient", "p")
                if n == 0:
                    await started.wait()  # both read version 1 before either writes
                else:
                    started.set()
                await tx.write(rec, (), expected_version=1)
                await asyncio.sleep(0)
            return "won"
        except VersionConflict:
            return "lost"

    assert sorted(await asyncio.gather(writer(0), writer(1))) == ["lost", "won"]
    assert (await storage.history(HistoryQuery("Patient", "p"))).total == 2


async def test_a_transaction_is_all_or_nothing(storage: MongoStorage) -> None:
    rec = StoredResource("Patient", "a", 1, instant(1), False, b"{}", "POST")
    with pytest.raises(RuntimeError):
        async with storage.transaction() as tx:
            await tx.write(rec, [StringValue("name", "x", "x")], expected_version=0)
            assert await tx.read("Patient", "a") == rec  # its own write
            assert await tx.search(SearchQuery(("Patient",))) is not None
            assert await storage.read("Patient", "a") is None  # not visible outside yet
            raise RuntimeError("roll back")
    assert await storage.read("Patient", "a") is None
    assert (await storage.history(HistoryQuery())).total == 0
    assert await ids(storage, types=("Patient",)) == []


async def test_lock_serializes_transactions_that_claim_the_same_key(storage: MongoStorage) -> None:
    order: list[str] = []

    async def claimant(name: str, hold: float) -> None:
        async with storage.transaction() as tx:
            await tx.lock("create:Patient?identifier=x")
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            order.append(f"{name} out")

    await asyncio.gather(claimant("first", 0.05), claimant("second", 0))
    assert order == ["first in", "first out", "second in", "second out"]


async def test_a_lock_taken_after_other_work_conflicts_instead_of_waiting(
    storage: MongoStorage,
) -> None:
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with storage.transaction() as tx:
            await tx.lock("k")
            holding.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await holding.wait()
    with pytest.raises(TransactionConflict):
        async with storage.transaction() as tx:
            await tx.read("Patient", "x")
            await tx.lock("k")
    release.set()
    await task


async def test_a_commit_after_a_conflicting_commit_fails() -> None:
    """The adapter's own emulation: first committer wins on a document both wrote."""
    client = MockClient()
    coll = client.get_database("d")["c"]
    s1, s2 = client.start_session(), client.start_session()
    await s1.start_transaction()
    await s2.start_transaction()
    await coll.insert_one({"_id": 1}, session=s1)
    await s1.commit_transaction()
    with pytest.raises(OperationFailure, match="WriteConflict") as raised:
        await coll.insert_one({"_id": 1, "late": True}, session=s2)
    assert raised.value.has_error_label("TransientTransactionError")
    await s2.abort_transaction()
    assert await coll.find_one({"_id": 1}) == {"_id": 1}
