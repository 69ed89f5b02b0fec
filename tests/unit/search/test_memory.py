"""`search.memory`: one resource judged against conditions from its index values, with
"unknown" for what memory cannot decide (its callers then ask the engine or grant nothing)."""

from __future__ import annotations

from fhir_server.search.conditions import (
    AllOf,
    AnyOf,
    ChainCondition,
    IdCondition,
    Not,
    SearchQuery,
    StringCondition,
    TokenCondition,
)
from fhir_server.search.memory import params_of, verdict
from fhir_server.search.values import StringValue, TokenValue

VALUES = (
    TokenValue("code", "http://loinc.org", "8867-4"),
    TokenValue("status", None, "final"),
    StringValue("name", "chalmers", "Chalmers"),
)
CHAIN = ChainCondition("subject", SearchQuery(("Patient",), ()))


def test_leaves_answer_as_the_engines_do() -> None:
    assert verdict(TokenCondition("code", "http://loinc.org", "8867-4"), "o1", VALUES) == "yes"
    assert verdict(TokenCondition("code", "http://snomed.info/sct", "8867-4"), "o1", VALUES) == "no"
    assert verdict(TokenCondition("status", "", "final"), "o1", VALUES) == "yes"  # no system
    assert verdict(TokenCondition("code", None, "8867-4", negate=True), "o1", VALUES) == "no"
    assert verdict(StringCondition("name", "chal"), "o1", VALUES) == "yes"
    assert verdict(StringCondition("name", "Chal", "exact"), "o1", VALUES) == "no"
    assert verdict(IdCondition(("o1", "o2")), "o1", VALUES) == "yes"


def test_what_memory_cannot_decide_is_unknown_and_stays_so_unless_decided() -> None:
    yes, no = IdCondition(("o1",)), IdCondition(("x",))
    assert verdict(CHAIN, "o1", VALUES) == "unknown"
    assert verdict(Not(CHAIN), "o1", VALUES) == "unknown"
    assert verdict(AllOf((yes, CHAIN)), "o1", VALUES) == "unknown"
    assert verdict(AllOf((no, CHAIN)), "o1", VALUES) == "no"  # decided without the chain
    assert verdict(AnyOf((yes, CHAIN)), "o1", VALUES) == "yes"
    assert verdict(AnyOf((no, CHAIN)), "o1", VALUES) == "unknown"
    assert verdict(Not(AnyOf((no, no))), "o1", VALUES) == "yes"


def test_params_of_names_what_to_extract() -> None:
    condition = AllOf((TokenCondition("code", None, "x"), Not(StringCondition("name", "a"))))
    assert params_of(condition) == {"code", "name"}
