"""CodeSystem $lookup and $validate-code."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import BadRequest, NotFound
from terminology import Terminology
from tests.unit.terminology.samples import ACT_CODE, COLORS, GENDER, params


def _properties(result: dict[str, Any]) -> list[tuple[str, object]]:
    out = []
    for entry in result["parameter"]:
        if entry["name"] == "property":
            parts = {
                p["name"]: next(v for k, v in p.items() if k.startswith("value"))
                for p in entry["part"]
            }
            out.append((parts["code"], parts["value"]))
    return out


def test_lookup_gender(core: Terminology) -> None:
    result = params(core.lookup(GENDER, "female"))
    assert result["name"] == "AdministrativeGender"
    assert result["version"] == "4.0.1"
    assert result["display"] == "Female"
    assert result["definition"] == "Female."


def test_lookup_returns_hierarchy_properties_by_default(core: Terminology) -> None:
    result = core.lookup(ACT_CODE, "CC")
    assert ("parent", "_ActAccountCode") in _properties(result)
    assert {v for c, v in _properties(result) if c == "child"} == {"AE", "DN", "DV", "MC", "V"}
    only_parent = core.lookup(ACT_CODE, "CC", properties=["parent"])
    assert _properties(only_parent) == [("parent", "_ActAccountCode")]


def test_lookup_designations_and_language(local: Terminology) -> None:
    result = local.lookup(COLORS, "blue", display_language="de")
    assert params(result)["display"] == "Blau"
    designations = [e["part"] for e in result["parameter"] if e["name"] == "designation"]
    assert {"name": "language", "valueCode": "fr"} in designations[0]
    assert {"name": "value", "valueString": "Bleu"} in designations[0]
    assert ("hue", "cold") in _properties(result)
    assert ("notSelectable", True) in _properties(local.lookup(COLORS, "group"))


def test_lookup_errors(core: Terminology) -> None:
    with pytest.raises(NotFound, match=r"example\.org/none"):
        core.lookup("http://example.org/none", "x")
    with pytest.raises(NotFound, match="'nope'"):
        core.lookup(GENDER, "nope")
    with pytest.raises(BadRequest):
        core.lookup(GENDER, "")
    with pytest.raises(BadRequest):
        core.lookup(["not", "a", "url"], "male")  # type: ignore[arg-type]


def test_validate_code_in_system(core: Terminology) -> None:
    assert params(core.validate_code_in_system(GENDER, "male")) == {
        "result": True,
        "display": "Male",
    }
    wrong = params(core.validate_code_in_system(GENDER, "male", display="Man"))
    assert wrong["result"] is True and "Man" in wrong["message"]
    unknown = params(core.validate_code_in_system(GENDER, "man"))
    assert unknown["result"] is False and "man" in unknown["message"]
    with pytest.raises(NotFound):
        core.validate_code_in_system("http://example.org/none", "x")
