"""ValueSet $expand: compose rules, paging, text filter, activeOnly, designations, errors."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import BadRequest, NotFound, Unprocessable
from terminology import Terminology
from tests.unit.terminology.samples import (
    ACT_CODE,
    COLORS,
    COLORS_VS,
    DAG,
    GENDER,
    GENDER_VS,
    codes,
    value_set,
)


def _expand(
    terminology: Terminology, *includes: dict[str, Any], exclude: tuple[Any, ...] = (), **kw
) -> dict[str, Any]:
    compose = {"include": list(includes), "exclude": list(exclude)}
    return terminology.expand(value_set("http://example.org/vs/inline", compose), **kw)


def test_administrative_gender(core: Terminology) -> None:
    result = core.expand(GENDER_VS)
    expansion = result["expansion"]
    assert codes(result) == ["male", "female", "other", "unknown"]
    assert expansion["total"] == 4 and expansion["offset"] == 0
    assert expansion["identifier"].startswith("urn:uuid:") and "timestamp" in expansion
    assert expansion["contains"][0] == {
        "system": GENDER,
        "version": "4.0.1",
        "code": "male",
        "display": "Male",
    }
    assert result["url"] == GENDER_VS and "compose" not in result


def test_is_a_filter_on_v3_with_abstract_concepts(core: Terminology) -> None:
    result = core.expand("http://terminology.hl7.org/ValueSet/v3-ActMoodIntent")
    assert set(codes(result)) == {
        "INT",
        "_ActMoodDesire",
        "_ActMoodActRequest",
        "ARQ",
        "PERMRQ",
        "RQO",
        "PRP",
        "RMD",
        "PRMS",
        "APT",
    }
    abstract = {c["code"] for c in result["expansion"]["contains"] if c.get("abstract")}
    assert abstract == {"_ActMoodDesire", "_ActMoodActRequest"}


def test_hierarchy_operators(core: Terminology) -> None:
    include: dict[str, Any] = {
        "system": ACT_CODE,
        "filter": [{"property": "concept", "op": "descendent-of", "value": "_ActAccountCode"}],
    }
    assert set(codes(_expand(core, include))) == {
        "ACCTRECEIVABLE",
        "CASH",
        "CC",
        "PBILLACCT",
        "AE",
        "DN",
        "DV",
        "MC",
        "V",
    }
    include["filter"].append({"property": "concept", "op": "is-not-a", "value": "CC"})
    assert set(codes(_expand(core, include))) == {"ACCTRECEIVABLE", "CASH", "PBILLACCT"}
    generalizes = {
        "system": ACT_CODE,
        "filter": [{"property": "concept", "op": "generalizes", "value": "V"}],
    }
    assert set(codes(_expand(core, generalizes))) == {"V", "CC", "_ActAccountCode"}


def test_code_filters_and_exclude(core: Terminology) -> None:
    in_filter = {
        "system": ACT_CODE,
        "filter": [{"property": "code", "op": "in", "value": "AE,DN,V"}],
    }
    assert codes(
        _expand(core, in_filter, exclude=({"system": ACT_CODE, "concept": [{"code": "DN"}]},))
    ) == ["AE", "V"]
    regex = {
        "system": ACT_CODE,
        "filter": [
            {"property": "concept", "op": "is-a", "value": "CC"},
            {"property": "code", "op": "regex", "value": "D."},
        ],
    }
    assert codes(_expand(core, regex)) == ["DN", "DV"]


def test_value_set_imports(core: Terminology) -> None:
    result = core.expand("http://terminology.hl7.org/ValueSet/v3-ProvenanceEventCurrentState")
    assert codes(result) == [
        "aborted",
        "cancelled",
        "completed",
        "new",
        "nullified",
        "obsolete",
        "AU",
        "DI",
        "DO",
        "LA",
        "UC",
    ]
    yes_no = core.expand("http://hl7.org/fhir/ValueSet/yesnodontknow")
    assert sorted(codes(yes_no)) == ["N", "Y", "asked-unknown"]
    intersect = {"system": GENDER, "valueSet": [GENDER_VS]}
    assert len(codes(_expand(core, intersect))) == 4
    narrowed = {"valueSet": [GENDER_VS, "http://hl7.org/fhir/ValueSet/administrative-gender"]}
    assert len(codes(_expand(core, narrowed))) == 4


def test_explicit_concepts_keep_their_display(local: Terminology) -> None:
    include = {"system": COLORS, "concept": [{"code": "red", "display": "Rot"}, {"code": "navy"}]}
    contains = _expand(local, include)["expansion"]["contains"]
    assert [(c["code"], c["display"]) for c in contains] == [("red", "Rot"), ("navy", "Navy blue")]


def test_paging(local: Terminology) -> None:
    everything = codes(local.expand(COLORS_VS))
    assert everything == ["red", "crimson", "scarlet", "blue", "navy", "group"]
    page = local.expand(COLORS_VS, count=2, offset=2)
    assert codes(page) == ["scarlet", "blue"]
    assert page["expansion"]["total"] == 6 and page["expansion"]["offset"] == 2
    names = {p["name"] for p in page["expansion"]["parameter"]}
    assert names == {"count", "offset"}
    assert codes(local.expand(COLORS_VS, count=0)) == []
    with pytest.raises(BadRequest):
        local.expand(COLORS_VS, count=-1)


def test_text_filter_active_only_and_abstract(local: Terminology) -> None:
    assert codes(local.expand(COLORS_VS, filter="red")) == ["red", "crimson"]
    assert codes(local.expand(COLORS_VS, filter="BLU")) == ["blue", "navy"]
    active = local.expand(COLORS_VS, active_only=True)
    assert "scarlet" not in codes(active) and active["expansion"]["total"] == 5
    inactive = local.expand(COLORS_VS)["expansion"]["contains"][2]
    assert inactive["code"] == "scarlet" and inactive["inactive"] is True
    assert local.expand(COLORS_VS)["expansion"]["contains"][5]["abstract"] is True


def test_designations_and_display_language(local: Terminology) -> None:
    plain = local.expand(COLORS_VS)["expansion"]["contains"][0]
    assert "designation" not in plain
    rich = local.expand(COLORS_VS, include_designations=True, display_language="fr")
    red = rich["expansion"]["contains"][0]
    assert red["display"] == "Rouge"
    assert red["designation"] == [{"language": "fr", "value": "Rouge"}]
    assert rich["expansion"]["contains"][1]["display"] == "Crimson red"


def test_property_filters(local: Terminology) -> None:
    warm = {"system": COLORS, "filter": [{"property": "hue", "op": "=", "value": "warm"}]}
    assert codes(_expand(local, warm)) == ["red", "crimson"]
    has_hue = {"system": COLORS, "filter": [{"property": "hue", "op": "exists", "value": "false"}]}
    assert codes(_expand(local, has_hue)) == ["scarlet", "navy", "group"]
    parent = {"system": DAG, "filter": [{"property": "parent", "op": "=", "value": "b"}]}
    assert codes(_expand(local, parent)) == ["c", "e"]


@pytest.mark.parametrize(
    "bad",
    [
        {"property": "concept", "op": "near", "value": "red"},
        {"property": "code", "op": "regex", "value": "("},
        {"property": "flavour", "op": "=", "value": "sweet"},
        {"property": "concept", "op": "is-a"},
    ],
)
def test_bad_filters(local: Terminology, bad: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        _expand(local, {"system": COLORS, "filter": [bad]})


def test_unknown_content_is_an_error_not_a_partial_list(core: Terminology) -> None:
    with pytest.raises(NotFound, match="Unknown value set"):
        core.expand("http://example.org/none")
    with pytest.raises(NotFound, match=r"http://loinc\.org"):
        core.expand("http://hl7.org/fhir/ValueSet/observation-codes")
    with pytest.raises(Unprocessable, match=r"http://snomed\.info/sct"):
        core.expand("http://hl7.org/fhir/ValueSet/clinical-findings")
    with pytest.raises(BadRequest):
        core.expand({"resourceType": "ValueSet", "compose": {"include": [{}]}})


def test_self_import_is_reported(local: Terminology) -> None:
    local.put(
        value_set(
            "http://example.org/vs/loop",
            {"include": [{"valueSet": ["http://example.org/vs/loop"]}]},
            "loop",
        )
    )
    with pytest.raises(Unprocessable):
        local.expand("http://example.org/vs/loop")


def test_codes_in_and_contains(core: Terminology, local: Terminology) -> None:
    assert core.codes_in(GENDER_VS) == {(GENDER, c) for c in ("male", "female", "other", "unknown")}
    assert core.contains(GENDER_VS, GENDER, "male") is True
    assert core.contains(GENDER_VS, None, "female") is True
    assert core.contains(GENDER_VS, GENDER, "M") is False
    assert core.contains("http://example.org/none", GENDER, "male") is None
    assert core.contains("http://hl7.org/fhir/ValueSet/observation-codes", None, "x") is None
    assert core.contains("http://hl7.org/fhir/ValueSet/yesnodontknow", None, "Y") is True
    local.put(
        value_set(
            "http://example.org/vs/warm",
            {
                "include": [
                    {
                        "system": COLORS,
                        "filter": [{"property": "concept", "op": "is-a", "value": "red"}],
                    }
                ]
            },
            "warm",
        )
    )
    assert local.contains("http://example.org/vs/warm", COLORS, "crimson") is True
    assert local.contains("http://example.org/vs/warm", COLORS, "navy") is False


def test_put_invalidates_cached_expansions(local: Terminology) -> None:
    assert len(codes(local.expand(COLORS_VS))) == 6
    local.put(
        value_set(
            COLORS_VS, {"include": [{"system": COLORS, "concept": [{"code": "red"}]}]}, "colors"
        )
    )
    assert codes(local.expand(COLORS_VS)) == ["red"]
