"""CodeSystemIndex: concepts, nested and property-based hierarchies, case, subsumption."""

from __future__ import annotations

import random
from typing import Any

import pytest

from fhir_server.errors import BadRequest, NotFound
from terminology import CodeSystemIndex, Terminology
from tests.unit.terminology.samples import ACT_CODE, DAG, ROLE_CODE, params


def _codes(index: CodeSystemIndex, keys: tuple[str, ...] | frozenset[str]) -> set[str]:
    return {index.concept(k).code for k in keys}


def test_v3_nested_hierarchy(core: Terminology) -> None:
    index = core.code_system(ACT_CODE)
    assert index is not None
    assert _codes(index, index.children("_ActAccountCode")) == {
        "ACCTRECEIVABLE",
        "CASH",
        "CC",
        "PBILLACCT",
    }
    assert _codes(index, index.children("CC")) == {"AE", "DN", "DV", "MC", "V"}
    assert index.get("_ActAccountCode").abstract
    assert index.get("FFS").inactive  # status retired
    assert _codes(index, index.ancestors("V")) == {"CC", "_ActAccountCode"}


def test_v3_child_properties_add_parents(core: Terminology) -> None:
    # RoleCode nests HBRO under BRO; HSIB names it with a `child` property.
    index = core.code_system(ROLE_CODE)
    assert index is not None
    assert _codes(index, index.parents("HBRO")) == {"BRO", "HSIB"}
    assert index.is_a("HBRO", "HSIB") and index.is_a("HBRO", "SIB")
    null_flavor = core.code_system("http://terminology.hl7.org/CodeSystem/v3-NullFlavor")
    assert core.codes_above(null_flavor.url, "NAV") == {"NAV", "ASKU", "NAVU", "UNK", "NI"}


def test_role_code_sibling_descendants(core: Terminology) -> None:
    assert core.codes_below(ROLE_CODE, "SIB") == {
        "SIB",
        "BRO",
        "HBRO",
        "NBRO",
        "TWINBRO",
        "FTWINBRO",
        "ITWINBRO",
        "STPBRO",
        "HSIB",
        "HSIS",
        "NSIB",
        "NSIS",
        "TWINSIS",
        "FTWINSIS",
        "ITWINSIS",
        "TWIN",
        "FTWIN",
        "ITWIN",
        "SIS",
        "STPSIS",
        "STPSIB",
    }


def test_dag_from_parent_properties(local: Terminology) -> None:
    assert local.codes_below(DAG, "a") == {"a", "c", "d"}
    assert local.codes_below(DAG, "b") == {"b", "c", "d", "e"}
    assert local.codes_above(DAG, "d") == {"d", "c", "a", "b", "root"}
    assert local.codes_below(DAG, "d") == {"d"}


@pytest.mark.parametrize(
    ("system", "a", "b", "outcome"),
    [
        (ACT_CODE, "CC", "CC", "equivalent"),
        (ACT_CODE, "_ActAccountCode", "V", "subsumes"),
        (ACT_CODE, "V", "CC", "subsumed-by"),
        (ACT_CODE, "CASH", "CC", "not-subsumed"),
        (ROLE_CODE, "HSIB", "HBRO", "subsumes"),
    ],
)
def test_subsumes(core: Terminology, system: str, a: str, b: str, outcome: str) -> None:
    assert params(core.subsumes(system, a, b)) == {"outcome": outcome}


def test_subsumes_on_dag(local: Terminology) -> None:
    assert params(local.subsumes(DAG, "b", "d"))["outcome"] == "subsumes"
    assert params(local.subsumes(DAG, "d", "a"))["outcome"] == "subsumed-by"
    assert params(local.subsumes(DAG, "a", "e"))["outcome"] == "not-subsumed"


def test_subsumes_errors(core: Terminology) -> None:
    with pytest.raises(NotFound, match="NOPE"):
        core.subsumes(ACT_CODE, "CC", "NOPE")
    with pytest.raises(NotFound, match=r"example\.org"):
        core.subsumes("http://example.org/none", "a", "b")
    with pytest.raises(BadRequest):
        core.subsumes(ACT_CODE, None, "CC")  # type: ignore[arg-type]


def test_case_insensitive_system() -> None:
    index = CodeSystemIndex(
        {
            "url": "http://x",
            "caseSensitive": False,
            "concept": [{"code": "Abc", "concept": [{"code": "Def"}]}],
        }
    )
    assert index.get("ABC").code == "Abc"
    assert index.is_a("def", "abc")
    sensitive = CodeSystemIndex({"url": "http://x", "concept": [{"code": "Abc"}]})
    assert sensitive.get("abc") is None


def test_cycles_do_not_hang() -> None:
    index = CodeSystemIndex(
        {
            "url": "http://x",
            "concept": [
                {"code": "a", "property": [{"code": "parent", "valueCode": "b"}]},
                {"code": "b", "property": [{"code": "parent", "valueCode": "a"}]},
            ],
        }
    )
    assert index.is_a("b", "a")
    assert index.subsumption("a", "a") == "equivalent"
    assert index.subsumption("a", "b") in {"subsumes", "subsumed-by"}


def _big_dag(size: int) -> dict[str, Any]:
    """`size` concepts, each with one to three earlier concepts as parents."""
    rng = random.Random(7)
    concepts: list[dict[str, Any]] = [{"code": "c0"}]
    for n in range(1, size):
        parents = {rng.randrange(max(0, n - 50), n) for _ in range(rng.randint(1, 3))}
        concepts.append(
            {
                "code": f"c{n}",
                "property": [{"code": "parent", "valueCode": f"c{p}"} for p in sorted(parents)],
            }
        )
    return {"url": "http://example.org/big", "concept": concepts}


def test_ten_thousand_concepts_index_and_subsume() -> None:
    """A large random hierarchy is labelled and answers subsumption (its speed is a bench
    figure: `bench/terminology.py`, not a timed test)."""
    index = CodeSystemIndex(_big_dag(10_000))
    assert index.hierarchy is not None
    rng = random.Random(3)
    pairs = [(f"c{rng.randrange(10_000)}", f"c{rng.randrange(10_000)}") for _ in range(2000)]
    outcomes = {index.subsumption(a, b) for a, b in pairs}
    assert "not-subsumed" in outcomes and index.is_a("c9999", "c0")
    assert index.subsumption("c0", "c9999") == "subsumes"
