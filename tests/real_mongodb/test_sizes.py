"""Sizes on a real server: resources just under and just over the 16 MiB BSON limit, a
100,000-concept CodeSystem, a version whose search values cannot fit (413, nothing
written), and searches whose filters would pass the command limit (400 naming the
parameter). Replica set and sharded cluster."""

from __future__ import annotations

from typing import Any, cast

import orjson
import pytest

from fhir_server.errors import TooLargeForStorage
from fhir_server.search.conditions import SearchQuery, TokenCondition
from fhir_server.search.extract import Indexer
from fhir_server.search.limits import SearchLimits
from fhir_server.search.registry import load_registry
from fhir_server.search.values import TokenValue
from fhir_server.storage.base import StoredResource
from tests.real_mongodb.conftest import Cluster
from tests.support.service_calls import call

pytestmark = pytest.mark.mongodb_real
NOW = "2026-01-01T00:00:00.000000Z"
MB = 1_000_000


def basic(size: int) -> dict[str, Any]:
    """A Basic resource of about `size` bytes of JSON (1 MB strings: the per-string limit)."""
    notes = [
        {"url": "http://example.org/note", "valueString": f"{i}" + "x" * 999_000}
        for i in range(size // MB)
    ]
    rest = size - len(orjson.dumps(notes)) - 100
    return {"resourceType": "Basic", "code": {"text": "y" * max(rest, 1)}, "extension": notes}


@pytest.mark.parametrize("size", [int(15.9 * MB), int(16.2 * MB)], ids=["15.9MB", "16.2MB"])
async def test_resources_around_the_document_limit_round_trip(cluster: Cluster, size: int) -> None:
    svc = await cluster.service()
    body = basic(size)
    status, made = await call(svc, "POST", "Basic", body)
    assert status == 201, made
    status, read = await call(svc, "GET", f"Basic/{made['id']}")
    assert status == 200 and read["extension"] == body["extension"]
    status, history = await call(svc, "GET", f"Basic/{made['id']}/_history")
    assert status == 200 and history["total"] == 1


async def test_a_100k_concept_code_system_is_stored_and_searchable(cluster: Cluster) -> None:
    storage = await cluster.storage()
    body = {
        "resourceType": "CodeSystem",
        "id": "big",
        "url": "http://example.org/cs/big",
        "status": "active",
        "content": "complete",
        "concept": [{"code": f"C{i:06d}", "display": f"Concept {i}"} for i in range(100_000)],
    }
    index = Indexer(load_registry()).extract(body)
    rec = StoredResource("CodeSystem", "big", 1, NOW, False, orjson.dumps(body), "PUT")
    async with storage.transaction() as tx:
        await tx.write(rec, index, expected_version=0)
    assert await storage.read("CodeSystem", "big") == rec
    page = await storage.search(
        SearchQuery(("CodeSystem",), ((TokenCondition("code", None, "C054321"),),))
    )
    assert [r.id for r in page.resources] == ["big"]


async def test_search_values_past_16_mib_are_a_413_and_nothing_is_written(
    cluster: Cluster,
) -> None:
    storage = await cluster.storage()
    index = [TokenValue("code", "http://example.org/cs", f"code-{i:07d}") for i in range(300_000)]
    rec = StoredResource("CodeSystem", "huge", 1, NOW, False, b'{"resourceType":"CodeSystem"}')
    with pytest.raises(TooLargeForStorage):
        async with storage.transaction() as tx:
            await tx.write(rec, index, expected_version=0)
    assert await storage.read("CodeSystem", "huge") is None
    for name in ("resources", "history", "chunks"):
        assert await cluster.db[name].count_documents({}) == 0


class _ManyCodes:
    def codes_in(self, value_set: str) -> frozenset[tuple[str, str]]:
        return frozenset(("http://loinc.org", f"{i:06d}-{i % 10}") for i in range(500_000))

    def codes_below(self, system: str, code: str) -> frozenset[str]:
        return frozenset(f"{i:06d}" for i in range(500_000))

    def codes_above(self, system: str, code: str) -> frozenset[str]:
        return frozenset()


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("url:above", "http://example.org/" + "a" * 5_800),
        ("code:in", "http://example.org/vs"),
        ("code:below", "http://loinc.org|1"),
        ("name:contains", "\0" + "-" * 9_000),
    ],
)
async def test_oversized_filters_are_a_400_naming_the_parameter(
    cluster: Cluster, param: str, value: str
) -> None:
    svc = await cluster.service(search_limits=SearchLimits(max_value_chars=10_000))
    svc.use_codes(cast(Any, _ManyCodes()))
    type = {"url": "ValueSet", "code": "Observation", "name": "Patient"}[param.split(":")[0]]
    status, outcome = await call(svc, "GET", type, query=((param, value),))
    if param == "name:contains":  # escaped: a valid search, no server error
        assert status == 200, outcome
        return
    assert status == 400, outcome
    assert outcome["issue"][0]["expression"] == [param]
