"""ConceptMap $translate, read against cm-administrative-gender-v2."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import NotFound
from terminology import Terminology
from tests.unit.terminology.samples import GENDER

V2 = "http://terminology.hl7.org/CodeSystem/v2-0001"
MAP = "http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v2"


def _matches(result: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    out = []
    for entry in result["parameter"]:
        if entry["name"] == "match":
            parts = {p["name"]: p for p in entry["part"]}
            concept = parts.get("concept", {}).get("valueCoding", {})
            out.append(
                (
                    parts["equivalence"]["valueCode"],
                    concept.get("code"),
                    parts["source"]["valueUri"],
                )
            )
    return out


def _result(result: dict[str, Any]) -> bool:
    return next(p["valueBoolean"] for p in result["parameter"] if p["name"] == "result")


def test_male_is_m(core: Terminology) -> None:
    result = core.translate(code="male", system=GENDER, concept_map=MAP)
    assert _result(result)
    assert _matches(result) == [("equal", "M", MAP)]
    coding = next(p for p in result["parameter"] if p["name"] == "match")["part"][1]
    assert coding["valueCoding"] == {"system": V2, "code": "M", "display": "Male"}


def test_other_is_wider(core: Terminology) -> None:
    result = core.translate(code="other", system=GENDER, target_system=V2)
    assert _matches(result) == [("wider", "A", MAP), ("wider", "O", MAP)]


def test_reverse_m_is_male(core: Terminology) -> None:
    result = core.translate(code="M", system=V2, concept_map=MAP, reverse=True)
    assert _matches(result) == [("equal", "male", MAP)]


def test_by_source_and_target_value_sets(core: Terminology) -> None:
    result = core.translate(
        code="female",
        system=GENDER,
        source="http://hl7.org/fhir/ValueSet/administrative-gender",
        target="http://terminology.hl7.org/ValueSet/v2-0001",
    )
    assert _matches(result) == [("equal", "F", MAP)]


def test_no_match(core: Terminology) -> None:
    result = core.translate(code="nope", system=GENDER, concept_map=MAP)
    assert not _result(result)
    assert "nope" in next(p["valueString"] for p in result["parameter"] if p["name"] == "message")
    with pytest.raises(NotFound):
        core.translate(code="male", system=GENDER, concept_map="http://example.org/none")


def test_unmapped_modes_and_unmatched() -> None:
    cm: dict[str, Any] = {
        "resourceType": "ConceptMap",
        "url": "http://example.org/cm",
        "group": [
            {
                "source": "http://s",
                "target": "http://t",
                "element": [{"code": "x", "target": [{"code": "y", "equivalence": "disjoint"}]}],
                "unmapped": {"mode": "provided"},
            }
        ],
    }
    terminology = Terminology(include_core=False)
    assert not _result(terminology.translate(code="x", system="http://s", concept_map=cm))
    provided = terminology.translate(code="z", system="http://s", concept_map=cm)
    assert _result(provided) and _matches(provided) == [("equal", "z", "http://example.org/cm")]
    cm["group"][0]["unmapped"] = {"mode": "fixed", "code": "unk"}
    fixed = terminology.translate(code="z", system="http://s", concept_map=cm)
    assert _matches(fixed) == [("inexact", "unk", "http://example.org/cm")]
