"""Large resources on every engine: a body past MongoDB's 16 MiB document limit and a
100,000-concept CodeSystem (the size of LOINC) are stored and read back like any other,
through the same storage port; versions of one resource keep their `lastUpdated` order
when the previous version's clock ran ahead.

On the mongomock engine the stand-in enforces the 16 MiB limit with PyMongo's
`DocumentTooLarge`, so a body stored whole in one document fails there as it would on a
real server (where the same tests run with FHIR_TEST_MONGODB_URL).
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.context import SYSTEM
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.search.conditions import SearchQuery, TokenCondition
from fhir_server.search.extract import Indexer
from fhir_server.search.registry import load_registry
from fhir_server.storage.base import HistoryQuery, Storage, StoredResource

NOW = "2026-01-01T00:00:00.000000Z"


def binary_like(id: str, size: int) -> bytes:
    """A resource body of `size` bytes or a little more (a DocumentReference with padding)."""
    padding = "x" * size
    return orjson.dumps(
        {"resourceType": "DocumentReference", "id": id, "status": "current", "text": padding}
    )


async def test_a_body_over_16_mib_is_stored_and_read_back_unchanged(storage: Storage) -> None:
    data = binary_like("big", 17 * 1024 * 1024)
    rec = StoredResource("DocumentReference", "big", 1, NOW, False, data, "PUT")
    async with storage.transaction() as tx:
        await tx.write(rec, (), expected_version=0)
    assert (await storage.read("DocumentReference", "big")) == rec
    assert (await storage.vread("DocumentReference", "big", 1)) == rec
    page = await storage.search(SearchQuery(("DocumentReference",)))
    assert page.resources == [rec]
    history = await storage.history(HistoryQuery("DocumentReference", "big"))
    assert history.resources == [rec]
    assert [r async for r in storage.iter_current("DocumentReference")] == [rec]


async def test_a_large_version_then_a_small_one_reads_the_small_one(storage: Storage) -> None:
    big = StoredResource("Basic", "b", 1, NOW, False, binary_like("b", 9 * 1024 * 1024), "PUT")
    small = StoredResource("Basic", "b", 2, NOW, False, binary_like("b", 10), "PUT")
    async with storage.transaction() as tx:
        await tx.write(big, (), expected_version=0)
    async with storage.transaction() as tx:
        await tx.write(small, (), expected_version=1)
    assert (await storage.read("Basic", "b")) == small
    assert (await storage.vread("Basic", "b", 1)) == big


async def test_a_100k_concept_code_system_is_stored_and_found_by_code(storage: Storage) -> None:
    concepts = [{"code": f"C{i:06d}", "display": f"Concept {i}"} for i in range(100_000)]
    body: dict[str, Any] = {
        "resourceType": "CodeSystem",
        "id": "big",
        "url": "http://example.org/cs/big",
        "status": "active",
        "content": "complete",
        "concept": concepts,
    }
    index = Indexer(load_registry()).extract(body)
    rec = StoredResource("CodeSystem", "big", 1, NOW, False, orjson.dumps(body), "PUT")
    async with storage.transaction() as tx:
        await tx.write(rec, index, expected_version=0)
    assert (await storage.read("CodeSystem", "big")) == rec
    found = await storage.search(
        SearchQuery(("CodeSystem",), ((TokenCondition("code", None, "C099999"),),))
    )
    assert [r.id for r in found.resources] == ["big"]


async def test_last_updated_moves_forward_after_a_version_from_a_clock_ahead(
    storage: Storage,
) -> None:
    """Another server whose clock runs ahead wrote version 1 "in the future": version 2
    still gets a later lastUpdated (max(now, previous + 1 µs)), so history stays in order."""
    ahead = "2099-01-01T00:00:00.000000Z"
    first = orjson.dumps(
        {"resourceType": "Patient", "id": "p", "meta": {"versionId": "1", "lastUpdated": ahead}}
    )
    async with storage.transaction() as tx:
        await tx.write(
            StoredResource("Patient", "p", 1, ahead, False, first), (), expected_version=0
        )
    svc = FhirService(storage)
    body = {"resourceType": "Patient", "id": "p", "gender": "male"}
    response = await svc.handle(Request("PUT", "Patient/p", body=body, context=SYSTEM))
    assert response.status == 200
    second = await storage.read("Patient", "p")
    assert second is not None and second.version == 2
    assert second.last_updated == "2099-01-01T00:00:00.000001Z"
    history = await storage.history(HistoryQuery("Patient", "p"))
    assert [r.version for r in history.resources] == [2, 1]
