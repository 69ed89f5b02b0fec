"""The R4 binding data and `check_bindings`, with a `contains` built from hand-written codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from terminology.bindings import (
    ALL_STRENGTHS,
    BINDINGS_FILE,
    MAX_ISSUES,
    Binding,
    bindings,
    check_bindings,
)

VS = "http://hl7.org/fhir/ValueSet/"
CODES = {
    VS + "administrative-gender": {"male", "female", "other", "unknown"},
    VS + "observation-status": {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    },
    VS + "name-use": {"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"},
    VS + "contact-point-system": {"phone", "fax", "email", "pager", "url", "sms", "other"},
    VS + "contact-point-use": {"home", "work", "temp", "old", "mobile"},
    VS + "narrative-status": {"generated", "extensions", "additional", "empty"},
    VS + "condition-clinical": {
        "active",
        "recurrence",
        "relapse",
        "inactive",
        "remission",
        "resolved",
    },
    VS + "observation-category": {"laboratory", "vital-signs", "survey"},
    VS + "quantity-comparator": {"<", "<=", ">=", ">"},
}
SYSTEMS = {
    VS + "condition-clinical": "http://terminology.hl7.org/CodeSystem/condition-clinical",
    VS + "observation-category": "http://terminology.hl7.org/CodeSystem/observation-category",
}


def contains(url: str, system: str | None, code: str) -> bool | None:
    if url not in CODES:
        return None
    if system is not None and system != SYSTEMS.get(url):
        return False
    return code in CODES[url]


def paths(issues):
    return [i.expression[0] for i in issues]


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"/>'},
    "gender": "female",
    "name": [{"use": "official", "family": "Chalmers"}, {"use": "usual", "given": ["Jim"]}],
    "telecom": [{"system": "phone", "value": "555", "use": "home"}],
    "contact": [{"telecom": [{"system": "email", "value": "a@b.c"}]}],
}
OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"text": "weight"},
    "valueQuantity": {"value": 70, "comparator": "<", "unit": "kg"},
}


def with_(resource: dict[str, Any], **changes) -> dict[str, Any]:
    return json.loads(json.dumps({**resource, **changes}))


# -- the data file ------------------------------------------------------------------------


def test_data_has_hand_picked_bindings():
    found = bindings()
    assert found["Patient.gender"] == Binding("required", VS + "administrative-gender", "code")
    assert found["Observation.status"] == Binding("required", VS + "observation-status", "code")
    assert "Observation.code" not in found  # an example binding
    assert found["Encounter.class"] == Binding(
        "extensible", "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode", "Coding"
    )
    assert found["HumanName.use"] == Binding("required", VS + "name-use", "code")
    assert found["Condition.clinicalStatus"].type == "CodeableConcept"
    assert found["Measure.subject[x]"].type == "CodeableConcept"


def test_data_file_is_compact_and_versionless():
    text = BINDINGS_FILE.read_text(encoding="utf-8")
    raw = json.loads(text)
    assert text == json.dumps(raw, sort_keys=True, separators=(",", ":")) + "\n"
    assert not any("|" in b[1] for b in raw["bindings"].values())
    assert {b[0] for b in raw["bindings"].values()} == ALL_STRENGTHS
    assert raw["children"]["Patient.name"] == "HumanName"
    assert raw["children"]["Patient.contact.telecom"] == "ContactPoint"
    assert raw["children"]["Questionnaire.item.item"] == "#Questionnaire.item"
    assert raw["bases"]["Patient"] == "DomainResource"


# -- the check ----------------------------------------------------------------------------


def test_valid_patient_has_no_issues():
    assert check_bindings(PATIENT, contains) == []
    assert check_bindings(OBSERVATION, contains) == []


def test_bad_gender_is_one_error():
    [issue] = check_bindings(with_(PATIENT, gender="x"), contains)
    assert (issue.severity, issue.code, issue.expression) == (
        "error",
        "code-invalid",
        ("Patient.gender",),
    )
    assert "'x' is not in the value set " + VS + "administrative-gender" in issue.diagnostics
    assert "(required binding of Patient.gender)" in issue.diagnostics


def test_repeating_datatype_element_has_an_indexed_path():
    patient = with_(PATIENT)
    patient["name"][1]["use"] = "nick"
    [issue] = check_bindings(patient, contains)
    assert issue.expression == ("Patient.name[1].use",)
    assert "required binding of HumanName.use" in issue.diagnostics


def test_bad_observation_status():
    issues = check_bindings(with_(OBSERVATION, status="done"), contains)
    assert paths(issues) == ["Observation.status"]


def test_choice_datatype_element():
    obs = with_(OBSERVATION, valueQuantity={"value": 1, "comparator": "~"})
    assert paths(check_bindings(obs, contains)) == ["Observation.value.ofType(Quantity).comparator"]


def test_backbone_then_datatype():
    patient = with_(PATIENT)
    patient["contact"][0]["telecom"][0]["system"] = "pigeon"
    assert paths(check_bindings(patient, contains)) == ["Patient.contact[0].telecom[0].system"]


def test_narrative_status_via_domain_resource():
    patient = with_(PATIENT, text={"status": "mine", "div": "<div/>"})
    assert paths(check_bindings(patient, contains)) == ["Patient.text.status"]


def test_contained_resources():
    patient = with_(
        PATIENT,
        contained=[
            {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}},
            {"resourceType": "Patient", "id": "q", "gender": "y"},
        ],
    )
    assert paths(check_bindings(patient, contains)) == ["Patient.contained[1].gender"]


def test_bundle_entries_are_walked():
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": with_(OBSERVATION, status="nope")}],
    }
    assert paths(check_bindings(bundle, contains)) == ["Bundle.entry[0].resource.status"]


def test_recursive_content_reference():
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [
            {"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "nonsense"}]},
        ],
    }

    def known(url: str, system: str | None, code: str) -> bool | None:
        return code != "nonsense"

    assert paths(check_bindings(questionnaire, known)) == ["Questionnaire.item[0].item[0].type"]


def test_cannot_tell_is_no_issue():
    # a value set the core does not define (LOINC's) is asked of `contains`, which cannot tell
    sequence = {
        "resourceType": "MolecularSequence",
        "coordinateSystem": 0,
        "structureVariant": [
            {"variantType": {"coding": [{"system": "http://loinc.org", "code": "x"}]}}
        ],
    }
    assert check_bindings(sequence, lambda url, system, code: None) == []


def test_required_codeable_concept():
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}}
    system = SYSTEMS[VS + "condition-clinical"]
    good = {
        "coding": [
            {"system": "http://example.org", "code": "a"},
            {"system": system, "code": "active"},
        ]
    }
    bad = {"coding": [{"system": system, "code": "sleeping"}]}
    assert check_bindings({**condition, "clinicalStatus": good}, contains) == []
    [issue] = check_bindings({**condition, "clinicalStatus": bad}, contains)
    assert issue.expression == ("Condition.clinicalStatus",)
    assert issue.severity == "error"
    [issue] = check_bindings({**condition, "clinicalStatus": {"text": "active"}}, contains)
    assert "a code from the value set is required" in issue.diagnostics


def test_extensible_and_preferred_only_when_asked():
    obs = with_(
        OBSERVATION,
        category=[{"coding": [{"system": SYSTEMS[VS + "observation-category"], "code": "gossip"}]}],
    )
    assert check_bindings(obs, contains) == []
    [issue] = check_bindings(obs, contains, strengths=ALL_STRENGTHS)
    assert (issue.severity, issue.expression) == ("warning", ("Observation.category[0]",))
    assert "preferred binding of Observation.category" in issue.diagnostics
    text_only = with_(OBSERVATION, category=[{"text": "lab"}])
    assert check_bindings(text_only, contains, strengths=ALL_STRENGTHS) == []


def test_extensible_coding():
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://example.org", "code": "XX"},
    }

    def only_finished(url: str, system: str | None, code: str) -> bool | None:
        return code == "finished"

    assert check_bindings(encounter, only_finished) == []
    [issue] = check_bindings(encounter, only_finished, strengths=frozenset({"extensible"}))
    assert (issue.severity, issue.expression) == ("warning", ("Encounter.class",))
    assert "'XX' (system http://example.org)" in issue.diagnostics


def test_inherited_element_names_the_resource():
    def never(url: str, system: str | None, code: str) -> bool | None:
        return False

    issues = check_bindings(
        {"resourceType": "Patient", "language": "xx"}, never, strengths=frozenset({"preferred"})
    )
    assert [i.diagnostics.endswith("(preferred binding of Patient.language)") for i in issues] == [
        True
    ]


@pytest.mark.parametrize(
    "resource",
    [
        None,
        [],
        "Patient",
        {},
        {"resourceType": 3},
        {"resourceType": "Nope", "gender": "x"},
        {"resourceType": "Patient", "gender": 3, "name": "x", "telecom": [None, 1, "a", []]},
        {"resourceType": "Patient", "contact": {"telecom": {"system": []}}, "contained": [1, {}]},
    ],
)
def test_odd_shapes_never_raise(resource):
    assert check_bindings(resource, contains) == []


def test_odd_codings_count_as_no_code():
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [None, {"code": 1}, "x"], "text": 2},
    }
    [issue] = check_bindings(condition, contains)
    assert "No code given" in issue.diagnostics


def test_issues_are_capped():
    patient = {"resourceType": "Patient", "name": [{"use": "x"}] * (MAX_ISSUES + 5)}
    assert len(check_bindings(patient, contains)) == MAX_ISSUES
