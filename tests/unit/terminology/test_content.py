"""The packaged R4 core terminology loads, quickly, and resolves by canonical url."""

from __future__ import annotations

import terminology
from terminology import Terminology
from tests.unit.terminology.samples import ACT_CODE, GENDER, GENDER_VS


def test_core_counts(core: Terminology) -> None:
    assert len(core.resources("CodeSystem")) == 1062
    assert len(core.resources("ValueSet")) == 1316
    assert len(core.resources("ConceptMap")) == 80


def test_core_resolves_urls_with_and_without_version(core: Terminology) -> None:
    gender = core.code_system(GENDER)
    assert gender is not None and gender.version == "4.0.1"
    assert core.code_system(GENDER, "4.0.1") is gender
    assert core.code_system(GENDER, "3.0.0") is None
    value_set = core.value_set(GENDER_VS + "|4.0.1")
    assert value_set is not None and value_set["id"] == "administrative-gender"
    assert core.concept_map("http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v2")
    assert core.code_system("http://example.org/none") is None


def test_prose_is_dropped_but_definitions_kept(core: Terminology) -> None:
    resource = core.code_system(ACT_CODE).resource
    assert "text" not in resource and "description" not in resource
    assert core.code_system(ACT_CODE).get("CC").definition.startswith("Description: Types of")


def test_start_up_loads_the_core_content() -> None:
    """A fresh Terminology has the R4 code systems (its start-up time is a bench figure)."""
    assert Terminology().code_system(ACT_CODE) is not None


def test_public_surface_is_listed() -> None:
    public = {n for n in vars(terminology) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(terminology.__all__)
    assert {"Terminology", "CodeSystemIndex"} <= set(terminology.__all__)


def test_put_overrides_core_and_remove_restores_it(core: Terminology) -> None:
    mine = Terminology()
    mine.put(
        {
            "resourceType": "CodeSystem",
            "id": "g",
            "url": GENDER,
            "content": "complete",
            "concept": [{"code": "x", "display": "X"}],
        }
    )
    assert [c.code for c in mine.code_system(GENDER)] == ["x"]
    mine.remove("CodeSystem", "g")
    assert [c.code for c in mine.code_system(GENDER)] == ["male", "female", "other", "unknown"]
