"""`_summary` and `_elements` (fhir_server.model.summary), from R4 search.html#summary.

Which elements are summary was read from the R4 Observation and Patient definitions
(the Σ flag): e.g. Observation.category, .referenceRange, .note and component.interpretation
are not summary; status, code, subject, effective[x], value[x] and component are.
"""

from __future__ import annotations

import copy

import pytest

from fhir_server.errors import BadRequest
from fhir_server.model.summary import SUBSETTED, apply_elements, apply_summary
from fhir_server.model.validate import validate_resource

TAG = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
NARRATIVE = {
    "status": "generated",
    "div": '<div xmlns="http://www.w3.org/1999/xhtml">Blood pressure</div>',
}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "bp",
    "meta": {"versionId": "2", "tag": [{"system": "urn:x", "code": "keep"}]},
    "text": NARRATIVE,
    "extension": [{"url": "http://example.org/e", "valueString": "x"}],
    "status": "final",
    "category": [{"coding": [{"code": "vital-signs"}]}],
    "code": {
        "coding": [
            {
                "system": "http://loinc.org",
                "code": "85354-9",
                "extension": [{"url": "http://example.org/e", "valueString": "x"}],
            }
        ],
        "text": "BP",
    },
    "subject": {"reference": "Patient/example", "display": "Peter"},
    "effectiveDateTime": "2020-01-01T10:00:00Z",
    "_effectiveDateTime": {"extension": [{"url": "http://example.org/e", "valueString": "x"}]},
    "note": [{"text": "calm"}],
    "referenceRange": [{"text": "normal"}],
    "component": [
        {
            "code": {"text": "systolic"},
            "valueQuantity": {"value": 107, "unit": "mmHg"},
            "interpretation": [{"text": "normal"}],
        },
        {
            "code": {"text": "diastolic"},
            "interpretation": [{"text": "normal"}],
            "dataAbsentReason": {"text": "not measured"},
        },
    ],
}


def test_summary_true_keeps_summary_elements_recursively() -> None:
    before = copy.deepcopy(OBSERVATION)
    assert apply_summary(OBSERVATION, "true") == {
        "resourceType": "Observation",
        "id": "bp",
        "meta": {"versionId": "2", "tag": [{"system": "urn:x", "code": "keep"}, TAG]},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "BP"},
        "subject": {"reference": "Patient/example", "display": "Peter"},
        "effectiveDateTime": "2020-01-01T10:00:00Z",
        "component": [
            {"code": {"text": "systolic"}, "valueQuantity": {"value": 107, "unit": "mmHg"}},
            {"code": {"text": "diastolic"}},
        ],
    }
    assert before == OBSERVATION


def test_summary_results_are_valid_resources() -> None:
    for mode in ("true", "text", "data"):
        validate_resource(apply_summary(OBSERVATION, mode))


def test_summary_text_keeps_text_id_meta_and_mandatory_top_level_elements() -> None:
    assert apply_summary(OBSERVATION, "text") == {
        "resourceType": "Observation",
        "id": "bp",
        "meta": {"versionId": "2", "tag": [{"system": "urn:x", "code": "keep"}, TAG]},
        "text": NARRATIVE,
        "status": "final",
        "code": OBSERVATION["code"],
    }


def test_summary_data_removes_only_the_text() -> None:
    out = apply_summary(OBSERVATION, "data")
    assert "text" not in out
    assert {k: v for k, v in out.items() if k != "meta"} == {
        k: v for k, v in OBSERVATION.items() if k not in ("text", "meta")
    }
    assert out["meta"]["tag"][-1] == TAG


def test_summary_false_is_the_resource_itself() -> None:
    assert apply_summary(OBSERVATION, "false") is OBSERVATION


def test_unknown_summary_mode() -> None:
    with pytest.raises(BadRequest):
        apply_summary(OBSERVATION, "maybe")


def test_the_tag_is_added_once() -> None:
    once = apply_summary(OBSERVATION, "true")
    assert apply_summary(once, "true")["meta"]["tag"] == once["meta"]["tag"]
    bare = apply_summary({"resourceType": "Patient", "id": "p"}, "true")
    assert bare == {"resourceType": "Patient", "id": "p", "meta": {"tag": [TAG]}}
    assert SUBSETTED == TAG


def test_summary_goes_into_resources_inside_a_bundle() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": "http://example.org/Observation/bp", "resource": OBSERVATION}],
    }
    entry = apply_summary(bundle, "true")["entry"][0]
    assert entry["fullUrl"] == "http://example.org/Observation/bp"
    assert "text" not in entry["resource"] and "note" not in entry["resource"]
    assert entry["resource"]["meta"]["tag"][-1] == TAG


def test_patient_summary() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "text": NARRATIVE,
        "active": True,
        "name": [{"family": "Chalmers"}],
        "gender": "male",
        "maritalStatus": {"text": "M"},
        "multipleBirthBoolean": False,
        "contact": [{"name": {"text": "x"}}],
        "communication": [{"language": {"text": "en"}}],
        "managingOrganization": {"reference": "O/1"},
        "deceasedBoolean": False,
    }
    assert apply_summary(patient, "true") == {
        "resourceType": "Patient",
        "id": "p",
        "meta": {"tag": [TAG]},
        "active": True,
        "name": [{"family": "Chalmers"}],
        "gender": "male",
        "deceasedBoolean": False,
        "managingOrganization": {"reference": "O/1"},
    }


def test_structure_only_types_drop_only_what_the_base_says_is_not_summary() -> None:
    product = {
        "resourceType": "MedicinalProduct",
        "id": "m",
        "text": NARRATIVE,
        "contained": [{"resourceType": "Organization", "id": "o"}],
        "name": [{"productName": "x"}],
    }
    assert apply_summary(product, "true") == {
        "resourceType": "MedicinalProduct",
        "id": "m",
        "meta": {"tag": [TAG]},
        "name": [{"productName": "x"}],
    }


def test_elements_keeps_the_listed_and_the_mandatory_elements() -> None:
    before = copy.deepcopy(OBSERVATION)
    out = apply_elements(OBSERVATION, ["subject", "Observation.effective", " note "])
    assert out == {
        "resourceType": "Observation",
        "id": "bp",
        "meta": {"versionId": "2", "tag": [{"system": "urn:x", "code": "keep"}, TAG]},
        "status": "final",
        "code": OBSERVATION["code"],
        "subject": OBSERVATION["subject"],
        "effectiveDateTime": "2020-01-01T10:00:00Z",
        "_effectiveDateTime": OBSERVATION["_effectiveDateTime"],
        "note": [{"text": "calm"}],
    }
    assert before == OBSERVATION
    validate_resource(out)


def test_elements_with_unknown_or_nested_names() -> None:
    out = apply_elements(
        {"resourceType": "Patient", "id": "p", "name": [{"family": "x"}], "gender": "male"},
        ["name.family", "nonsense"],
    )
    assert out == {
        "resourceType": "Patient",
        "id": "p",
        "meta": {"tag": [TAG]},
        "name": [{"family": "x"}],
    }
