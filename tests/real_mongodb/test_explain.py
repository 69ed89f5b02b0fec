"""Index use on a real server: `explain("executionStats")` of the filter of every condition
kind and of each sort, asserting the intended index and no collection scan, plus large
sorts (past a lowered blocking-sort memory limit, so only `allowDiskUse` lets them run).
Replica set and sharded cluster (on a mongos the plan is per shard)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fhir_server.search.conditions import (
    Condition,
    DateCondition,
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
from fhir_server.storage.mongodb import search_filter, search_sort
from tests.real_mongodb.conftest import Cluster
from tests.support.service_calls import call, patient

pytestmark = pytest.mark.mongodb_real

CONDITIONS: dict[str, tuple[str, Condition, str]] = {
    # kind: (type, condition, the index it must use)
    "token": ("Patient", TokenCondition("gender", None, "male"), "type_tok.p_tok.c_tok.s"),
    "string": ("Patient", StringCondition("name", "smi", "start"), "type_str.p_str.v"),
    "string-exact": ("Patient", StringCondition("name", "Smith", "exact"), "type_str.p_str.x"),
    "string-contains": (
        "Patient",
        StringCondition("name", "mit", "contains"),
        "type_str.p_str.v",
    ),
    "reference": (
        "Observation",
        ReferenceCondition("subject", "Patient", "p1"),
        "type_ref.p_ref.i_ref.t",
    ),
    "date": (
        "Patient",
        DateCondition("birthdate", "eq", "1970-01-01T00:00:00", "1970-01-01T23:59:59.999999"),
        "type_dt.p_dt.lo_dt.hi",
    ),
    "number": ("RiskAssessment", NumberCondition("probability", "eq", 0.4, 0.6), "type_num.p"),
    "quantity": (
        "Observation",
        QuantityCondition("value-quantity", "gt", 5.0, 5.0, None, None),
        "type_qty.p",
    ),
    "uri": ("ValueSet", UriCondition("url", "http://example.org/vs"), "type_uri.p_uri.u"),
    "missing": ("Patient", MissingCondition("gender", "token", False), "type_tok.p"),
}


def stages(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for key in ("inputStage", "queryPlan", "winningPlan"):
        if isinstance(plan.get(key), dict):
            yield from stages(plan[key])
    for key in ("inputStages", "shards"):
        for child in plan.get(key, ()):
            yield from stages(child)


async def explain(cluster: Cluster, command: dict[str, Any]) -> list[dict[str, Any]]:
    found = await cluster.db.command("explain", command, verbosity="executionStats")
    return list(stages(found["queryPlanner"]))


@pytest.mark.parametrize("kind", list(CONDITIONS))
async def test_each_condition_kind_uses_its_index(cluster: Cluster, kind: str) -> None:
    await cluster.storage()  # creates the indexes
    type, condition, index = CONDITIONS[kind]
    query = SearchQuery((type,), ((condition,),))
    plan = await explain(cluster, {"find": "resources", "filter": search_filter(query, (type,))})
    names = [s.get("indexName", "") for s in plan if s.get("stage") == "IXSCAN"]
    assert any(n.startswith(index) for n in names), (kind, plan)
    assert not any(s.get("stage") == "COLLSCAN" for s in plan), (kind, plan)


@pytest.mark.parametrize("sort", ["_id", "-_id", "_lastUpdated", "-_lastUpdated", ""])
async def test_native_sorts_are_read_from_an_index(cluster: Cluster, sort: str) -> None:
    await cluster.storage()
    keys = (SortKey(sort.lstrip("-"), sort.startswith("-")),) if sort else ()
    query = SearchQuery(("Patient",), (), sort=keys)
    command = {
        "find": "resources",
        "filter": search_filter(query, ("Patient",)),
        "sort": dict(search_sort(query)),
    }
    plan = await explain(cluster, command)
    assert not any(s.get("stage") in ("SORT", "COLLSCAN") for s in plan), plan


async def test_system_type_discovery_and_totals_scan_no_collection(cluster: Cluster) -> None:
    await cluster.storage()
    plan = await explain(cluster, {"distinct": "resources", "key": "type"})
    assert not any(s.get("stage") == "COLLSCAN" for s in plan), plan
    count = {"count": "resources", "query": {"type": "Patient", "deleted": False}}
    plan = await explain(cluster, count)
    assert not any(s.get("stage") == "COLLSCAN" for s in plan), plan


async def test_a_large_sort_runs_past_the_memory_limit(cluster: Cluster) -> None:
    if cluster.sharded:
        pytest.skip("the blocking-sort limit is a per-mongod parameter: set on the replica set")
    await cluster.admin.command(
        "setParameter", 1, internalQueryMaxBlockingSortMemoryUsageBytes=1_000_000
    )
    try:
        svc = await cluster.service()
        for i in range(60):
            body = patient(str(i), name=[{"family": f"N{i:03d}"}], text=_narrative(50_000))
            assert (await call(svc, "POST", "Patient", body))[0] == 201
        status, found = await call(svc, "GET", "Patient", query=(("_sort", "family"),))
        assert status == 200, found
        assert found["total"] == 60
    finally:
        await cluster.admin.command(
            "setParameter", 1, internalQueryMaxBlockingSortMemoryUsageBytes=104_857_600
        )


def _narrative(size: int) -> dict[str, str]:
    div = f'<div xmlns="http://www.w3.org/1999/xhtml">{"x" * size}</div>'
    return {"status": "generated", "div": div}
