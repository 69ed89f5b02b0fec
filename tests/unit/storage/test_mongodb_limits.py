"""Regression tests for what a real MongoDB cluster does and mongomock did not, on the
stricter stand-in (`tests/support/mongomock_limits.py`): documents and commands past
16 MiB, the server's regex errors, sort memory, transaction lifetime and size, transient
errors injected like the `failCommand` fail point, and two servers racing one Bundle.
Each of these failed on the engine before the fix (a 500, a 409, or two Patients)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from pymongo import ReadPreference

from fhir_server.errors import (
    PreconditionFailed,
    TooLargeForStorage,
    VersionConflict,
)
from fhir_server.interactions.common import criteria_key
from fhir_server.interactions.service import FhirService
from fhir_server.search.limits import SearchLimits
from fhir_server.search.values import TokenValue
from fhir_server.storage.base import StoredResource
from fhir_server.storage.mongodb import MongoStorage, chains
from tests.support.mongomock_async import MockClient
from tests.support.mongomock_limits import FailCommand
from tests.support.service_calls import call, patient

NOW = "2026-01-01T00:00:00.000000Z"


@pytest.fixture
def client() -> MockClient:
    return MockClient()


@pytest.fixture
async def storage(client: MockClient) -> AsyncIterator[MongoStorage]:
    engine = MongoStorage(cast(Any, client.get_database("fhir")))
    await engine.open()
    yield engine
    await engine.close()


@pytest.fixture
def service(storage: MongoStorage) -> FhirService:
    return FhirService(storage, base_url="http://test/fhir")


def count(client: MockClient, collection: str) -> int:
    return len(list(client._sync["fhir"][collection].find()))


def text(outcome: dict[str, Any]) -> str:
    return " ".join(i.get("diagnostics", "") for i in outcome["issue"])


# -- 1. documents over 16 MiB ----------------------------------------------------------


async def test_a_version_whose_index_is_over_16_mib_is_a_413_and_nothing_is_written(
    client: MockClient, storage: MongoStorage
) -> None:
    index = [TokenValue("code", "http://example.org/cs", f"code-{i:07d}") for i in range(300_000)]
    rec = StoredResource("CodeSystem", "huge", 1, NOW, False, b'{"resourceType":"CodeSystem"}')
    with pytest.raises(TooLargeForStorage) as raised:
        async with storage.transaction() as tx:
            await tx.write(rec, index, expected_version=0)
    assert raised.value.status == 413 and "nothing was written" in raised.value.diagnostics
    assert await storage.read("CodeSystem", "huge") is None
    assert count(client, "history") == count(client, "resources") == count(client, "chunks") == 0


async def test_a_resource_over_16_mib_through_the_service_is_stored(
    service: FhirService, client: MockClient
) -> None:
    notes = [
        {"url": "http://example.org/note", "valueString": f"{i}" + "x" * 1_000_000}
        for i in range(17)
    ]
    body = {"resourceType": "Basic", "code": {"text": "big"}, "extension": notes}
    status, made = await call(service, "POST", "Basic", body)
    assert status == 201, made
    status, read = await call(service, "GET", f"Basic/{made['id']}")
    assert status == 200 and read["extension"] == notes
    assert count(client, "chunks") == 5  # 17 MB and a little in 4 MiB pieces


# -- 2. conditional entries of a transaction Bundle claim their criteria -----------------


def bundle(mrn: str, name: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": patient(mrn, name=[{"family": name}]),
                "request": {"method": "PUT", "url": f"Patient?identifier=urn:mrn|{mrn}"},
            },
            {
                "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                "resource": {"resourceType": "Basic", "code": {"text": name}},
                "request": {
                    "method": "POST",
                    "url": "Basic",
                    "ifNoneExist": f"identifier=urn:basic|{mrn}",
                },
            },
        ],
    }


async def test_two_servers_racing_a_conditional_update_bundle_make_one_patient(
    client: MockClient,
) -> None:
    services = []
    for _ in range(2):
        engine = MongoStorage(cast(Any, client.get_database("fhir")))
        await engine.open()
        services.append(FhirService(engine))
    results = await asyncio.gather(
        call(services[0], "POST", "", bundle("42", "First")),
        call(services[1], "POST", "", bundle("42", "Second")),
    )
    assert [status for status, _ in results] == [200, 200], results
    _, found = await call(services[0], "GET", "Patient")
    assert found["total"] == 1, [e["resource"]["name"] for e in found["entry"]]


# -- 3. transient errors, unknown commit results, too large or too long ------------------


async def test_a_transient_error_is_retried_with_back_off_until_it_passes(
    service: FhirService, client: MockClient
) -> None:
    client.fail_points.add(
        FailCommand(["insert"], code=10107, labels=["TransientTransactionError"], times=8)
    )
    status, made = await call(service, "POST", "Patient", patient("1"))
    assert status == 201, made
    assert len(client.fail_points.hits) == 8
    assert count(client, "resources") == count(client, "history") == 1


async def test_a_transient_error_that_lasts_is_a_503_not_a_conflict(
    service: FhirService, client: MockClient
) -> None:
    service.transient_retry_seconds = 0.2
    client.fail_points.add(
        FailCommand(["insert"], close_connection=True, times=10_000)  # a failing primary
    )
    status, outcome = await call(service, "POST", "Patient", patient("1"))
    assert status == 503, outcome
    assert outcome["issue"][0]["code"] == "transient"
    assert count(client, "resources") == 0


async def test_an_unknown_commit_result_retries_the_commit_only(
    service: FhirService, client: MockClient
) -> None:
    client.fail_points.add(FailCommand(["commitTransaction"], close_connection=True, times=2))
    status, made = await call(service, "POST", "Patient", patient("1"))
    assert status == 201, made
    assert client.fail_points.hits == ["commitTransaction", "commitTransaction"]
    assert count(client, "resources") == count(client, "history") == 1


async def test_a_commit_result_that_stays_unknown_is_a_503_that_says_so(
    service: FhirService, client: MockClient
) -> None:
    client.fail_points.add(FailCommand(["commitTransaction"], close_connection=True, times=100))
    status, outcome = await call(service, "POST", "Patient", patient("1"))
    assert status == 503, outcome
    assert "may or may not" in text(outcome)
    assert client.fail_points.hits == ["commitTransaction"] * 3  # never the whole transaction


async def test_a_transaction_too_large_for_the_cache_is_a_413_at_once(
    service: FhirService, client: MockClient
) -> None:
    client.limits.transaction_write_bytes = 10_000
    entries = [
        {
            "resource": patient(str(i), gender="male"),
            "request": {"method": "POST", "url": "Patient"},
        }
        for i in range(100)
    ]
    body = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    status, outcome = await call(service, "POST", "", body)
    assert status == 413, outcome
    assert "split it" in text(outcome)
    assert count(client, "resources") == 0


async def test_a_transaction_past_its_lifetime_is_a_413_that_says_to_split_it(
    client: MockClient, storage: MongoStorage
) -> None:
    client.limits.transaction_lifetime_s = 0.05
    storage._options = type(storage._options)(lifetime=0.05)
    with pytest.raises(TooLargeForStorage) as raised:
        async with storage.transaction() as tx:
            await tx.read("Patient", "a")
            await asyncio.sleep(0.1)
            await tx.read("Patient", "b")
    assert "too long" in raised.value.diagnostics and "split it" in raised.value.diagnostics


async def test_a_lost_race_under_if_match_is_a_412(service: FhirService) -> None:
    async def lose(_: object) -> None:
        raise VersionConflict("Patient", "p", 1, 2)

    with pytest.raises(PreconditionFailed):
        await service.in_transaction(None, lose, retry=False)


async def test_transactions_read_the_primary_and_limit_the_commit(
    service: FhirService, client: MockClient
) -> None:
    await call(service, "POST", "Patient", patient("1"))
    options = client.transaction_options[-1]
    assert options["read_preference"] == ReadPreference.PRIMARY
    assert options["max_commit_time_ms"] == 30_000
    assert options["read_concern"].level == "snapshot"
    assert options["write_concern"].document == {"w": "majority"}


# -- 4. filters that would pass 16 MiB ---------------------------------------------------


async def test_a_long_uri_above_is_a_400_naming_the_parameter(storage: MongoStorage) -> None:
    roomy = FhirService(storage, search_limits=SearchLimits(max_value_chars=10_000))
    url = "http://example.org/" + "a" * 5_800
    status, outcome = await call(roomy, "GET", "ValueSet", query=(("url:above", url),))
    assert status == 400, outcome
    assert outcome["issue"][0]["expression"] == ["url:above"]


class _ManyCodes:
    """A terminology whose value set expands to more codes than a filter can carry."""

    def codes_in(self, value_set: str) -> frozenset[tuple[str, str]]:
        return frozenset(("http://loinc.org", f"{i:06d}-{i % 10}") for i in range(500_000))

    def codes_below(self, system: str, code: str) -> frozenset[str]:
        return frozenset(f"{i:06d}" for i in range(500_000))

    def codes_above(self, system: str, code: str) -> frozenset[str]:
        return frozenset()


@pytest.mark.parametrize(
    ("param", "value"), [("code:in", "http://example.org/vs"), ("code:below", "http://s|c")]
)
async def test_an_expansion_too_large_is_a_400_naming_the_parameter(
    service: FhirService, param: str, value: str
) -> None:
    service.use_codes(cast(Any, _ManyCodes()))
    status, outcome = await call(service, "GET", "Observation", query=((param, value),))
    assert status == 400, outcome
    assert outcome["issue"][0]["expression"] == [param]


# -- 5. :contains with a NUL byte or a very long value ------------------------------------


async def test_contains_with_a_nul_byte_searches_for_it(service: FhirService) -> None:
    await call(service, "POST", "Patient", patient("1", name=[{"family": "Smith"}]))
    status, found = await call(service, "GET", "Patient", query=(("name:contains", "mi\0th"),))
    assert status == 200, found
    assert found["total"] == 0
    status, found = await call(service, "GET", "Patient", query=(("name:contains", "mit"),))
    assert status == 200 and found["total"] == 1


async def test_contains_with_a_value_past_the_regex_limit_is_a_400(storage: MongoStorage) -> None:
    roomy = FhirService(storage, search_limits=SearchLimits(max_value_chars=100_000))
    status, outcome = await call(roomy, "GET", "Patient", query=(("name:contains", "-" * 20_000),))
    assert status == 400, outcome
    assert outcome["issue"][0]["expression"] == ["name:contains"]


# -- risks: sorts past the memory limit ----------------------------------------------------


async def test_a_sort_past_the_memory_limit_spills_to_disk(
    service: FhirService, client: MockClient
) -> None:
    client.limits.sort_memory_bytes = 100_000
    for i in range(12):
        body = patient(str(i), name=[{"family": f"N{i:02d}"}], text=_narrative(20_000))
        assert (await call(service, "POST", "Patient", body))[0] == 201
    for sort in ("family", "-_lastUpdated"):
        status, found = await call(service, "GET", "Patient", query=(("_sort", sort),))
        assert status == 200, found
        assert found["total"] == 12


def _narrative(size: int) -> dict[str, str]:
    return {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{"x" * size}</div>',
    }


# -- risks: identity claims --------------------------------------------------------------


async def test_a_create_claims_its_identity_that_conditional_writes_claim_too(
    service: FhirService, client: MockClient
) -> None:
    """A plain create of a Patient and a conditional write naming its identifier, whatever
    else their criteria say, claim one lock key: two servers serialize on it."""
    assert (await call(service, "POST", "Patient", patient("7")))[0] == 201
    locks = {doc["_id"] for doc in client._sync["fhir"]["locks"].find()}
    assert locks == {"identity:Patient|urn:mrn|7"}
    assert criteria_key("Patient", "identifier=urn:mrn|7&gender=male") == (
        criteria_key("Patient", "gender=female&identifier=urn:mrn|7")
    )
    assert criteria_key("Patient", "identifier=urn:mrn|7") == "identity:Patient|urn:mrn|7"


async def test_a_has_leading_to_too_many_resources_is_a_400(
    service: FhirService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `_has` key list is bounded like the inner matches (here 3, not 10,000): two
    Observations with two performers each lead to four patients, too many keys."""
    ids = []
    for i in range(4):
        ids.append((await call(service, "POST", "Patient", patient(str(i))))[1]["id"])
    for pair in (ids[:2], ids[2:]):
        body = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]},
            "performer": [{"reference": f"Patient/{pid}"} for pid in pair],
        }
        assert (await call(service, "POST", "Observation", body))[0] == 201
    query = (("_has:Observation:performer:code", "1-8"),)
    status, found = await call(service, "GET", "Patient", query=query)
    assert status == 200 and found["total"] == 4
    monkeypatch.setattr(chains, "MAX_MATCHES", 3)
    status, outcome = await call(service, "GET", "Patient", query=query)
    assert status == 400, outcome
    assert outcome["issue"][0]["expression"] == ["_has:Observation:performer"]


async def test_a_read_that_loses_the_server_is_a_503(
    service: FhirService, client: MockClient
) -> None:
    status, made = await call(service, "POST", "Patient", patient("r"))
    assert status == 201
    for path in (f"Patient/{made['id']}", "Patient", f"Patient/{made['id']}/_history/1"):
        client.fail_points.add(FailCommand(["find", "aggregate"], close_connection=True))
        status, outcome = await call(service, "GET", path)
        assert status == 503, (path, outcome)
        assert outcome["issue"][0]["code"] == "transient"
