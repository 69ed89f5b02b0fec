"""Odd content and odd arguments give FHIR errors (or are ignored), never a Python crash."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from fhir_server.errors import FhirError
from terminology import CodeSystemIndex, Terminology
from tests.unit.terminology.samples import COLORS, COLORS_VS, GENDER_VS

ODD_VALUE_SETS = [
    {"compose": "nope"},
    {"compose": {"include": "nope"}},
    {"compose": {"include": [{"system": 5}]}},
    {"compose": {"include": [{"system": COLORS, "concept": [{"display": "no code"}]}]}},
    {"compose": {"include": [{"system": COLORS, "filter": "nope"}]}},
    {"compose": {"include": [{"system": COLORS, "filter": [{"op": "=", "value": 1}]}]}},
    {"compose": {"include": [{"valueSet": "http://example.org/vs/colors"}]}},
    {"compose": {"include": [{"valueSet": ["http://example.org/missing"]}]}},
    {"expansion": {"contains": [{"code": 1}, "x", {"system": "s", "code": "c"}]}},
]


@pytest.mark.parametrize("compose", ODD_VALUE_SETS)
def test_odd_value_sets(local: Terminology, compose: dict[str, Any]) -> None:
    resource = {"resourceType": "ValueSet", "url": "http://example.org/odd", **compose}
    for call in (
        lambda: local.expand(resource),
        lambda: local.validate_code_in_value_set(resource, code="red", system=COLORS),
    ):
        with contextlib.suppress(FhirError):
            call()
    local.put({**resource, "id": "odd"})
    assert local.contains("http://example.org/odd", COLORS, "red") in (True, False, None)


def test_odd_code_system_content_is_skipped() -> None:
    index = CodeSystemIndex(
        {
            "concept": [
                "x",
                {"display": "no code"},
                {"code": "a", "property": 5, "designation": "d", "concept": "nope"},
                {"code": "b", "property": [{"code": "parent", "valueCode": "missing"}, 7]},
            ]
        }
    )
    assert [c.code for c in index] == ["a", "b"]
    assert index.subsumption("a", "b") == "not-subsumed"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filter": 5},
        {"count": "2"},
        {"offset": -1},
        {"display_language": 3},
        {"count": True},
    ],
)
def test_odd_expand_arguments(local: Terminology, kwargs: dict[str, Any]) -> None:
    with pytest.raises(FhirError):
        local.expand(COLORS_VS, **kwargs)


def test_odd_operation_arguments(core: Terminology) -> None:
    calls = [
        lambda: core.lookup(None, "x"),  # type: ignore[arg-type]
        lambda: core.validate_code_in_system(GENDER_VS, 5),  # type: ignore[arg-type]
        lambda: core.validate_code_in_value_set(5),  # type: ignore[arg-type]
        lambda: core.validate_code_in_value_set(GENDER_VS, coding="male"),  # type: ignore
        lambda: core.validate_code_in_value_set(GENDER_VS, code="male", display=5),  # type: ignore
        lambda: core.translate(code=None, system="s"),  # type: ignore[arg-type]
        lambda: core.translate(code="c", system="s", concept_map={"resourceType": "Patient"}),
        lambda: core.codes_below("http://example.org/none", "x"),
        lambda: core.codes_in("http://example.org/none"),
        lambda: core.put({"resourceType": "Patient", "id": "x"}),
        lambda: core.put("nope"),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(FhirError):
            call()
    assert core.contains(None, None, "x") is None  # type: ignore[arg-type]
    assert core.lookup("http://hl7.org/fhir/administrative-gender", "male", properties="parent")[
        "parameter"
    ]
