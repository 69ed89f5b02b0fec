"""FHIR R4 validation of JSON resources (fhir_server.model.validate).

Expected verdicts and paths are written from the R4 spec (json.html, datatypes.html,
narrative.html, extensibility.html); the models' own verdict (`deep=True`) is the
cross-check for everything the walk accepts.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from fhir_server.errors import InvalidResource
from fhir_server.model import validate
from fhir_server.model.validate import (
    NO_R4B_MODEL,
    R4B_ONLY_TYPES,
    STRUCTURE_ONLY_TYPES,
    is_resource_type,
    validate_resource,
)

NARRATIVE = {
    "status": "generated",
    "div": '<div xmlns="http://www.w3.org/1999/xhtml">Peter <b>Chalmers</b> &amp; co&#160;</div>',
}
PATIENT = {
    "resourceType": "Patient",
    "id": "example",
    "meta": {"versionId": "1", "lastUpdated": "2024-01-01T00:00:00Z"},
    "text": NARRATIVE,
    "extension": [
        {
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            "extension": [
                {
                    "url": "ombCategory",
                    "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"},
                },
                {"url": "text", "valueString": "White"},
            ],
        },
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {"city": "Boston"},
        },
    ],
    "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
    "active": True,
    "name": [
        {
            "use": "official",
            "family": "Chalmers",
            "given": ["Peter", "James"],
            "_given": [
                None,
                {"extension": [{"url": "http://example.org/middle", "valueBoolean": True}]},
            ],
        }
    ],
    "gender": "male",
    "birthDate": "1974-12-25",
    "_birthDate": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00",
            }
        ]
    },
    "deceasedBoolean": False,
    "address": [
        {
            "line": ["534 Erewhon St"],
            "city": "PleasantVille",
            "postalCode": "3999",
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/geolocation",
                    "extension": [
                        {"url": "latitude", "valueDecimal": 42.3},
                        {"url": "longitude", "valueDecimal": -71},
                    ],
                }
            ],
        }
    ],
    "multipleBirthInteger": 2,
    "contained": [{"resourceType": "Organization", "id": "org1", "name": "ACME"}],
    "managingOrganization": {"reference": "#org1"},
}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "bp",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "subject": {"reference": "Patient/example"},
    "effectiveDateTime": "2020-02-29T10:00:00.123+01:00",
    "issued": "2020-01-01T10:00:00Z",
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {
                "value": 107.5,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        },
        {"code": {"text": "count"}, "valueInteger": 3},
    ],
}
BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
            "resource": PATIENT,
            "request": {"method": "POST", "url": "Patient"},
        },
        {"resource": OBSERVATION, "request": {"method": "PUT", "url": "Observation/bp"}},
    ],
}
MEDICATION_REQUEST = {
    "resourceType": "MedicationRequest",
    "status": "active",
    "intent": "order",
    "medicationCodeableConcept": {"text": "aspirin"},
    "subject": {"reference": "Patient/example"},
    "dosageInstruction": [
        {
            "timing": {
                "repeat": {
                    "frequency": 1,
                    "period": 1,
                    "periodUnit": "d",
                    "timeOfDay": ["08:00:00"],
                }
            },
            "doseAndRate": [{"doseQuantity": {"value": 1}}],
        }
    ],
}
VALID = [
    PATIENT,
    OBSERVATION,
    BUNDLE,
    MEDICATION_REQUEST,
    {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}},
    {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="},
    {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/example"},
        "onsetDateTime": "2020",
    },
]


def issues_of(resource: object) -> list[tuple[str, tuple[str, ...]]]:
    with pytest.raises(InvalidResource) as caught:
        validate_resource(resource)  # type: ignore[arg-type]
    assert caught.value.status == 400
    return [(issue.code, issue.expression) for issue in caught.value.issues]


@pytest.mark.parametrize("resource", VALID, ids=lambda r: r["resourceType"])
def test_valid_resources_come_back_as_the_same_object(resource: dict[str, Any]) -> None:
    before = copy.deepcopy(resource)
    assert validate_resource(resource) is resource
    assert validate_resource(resource, deep=True) is resource
    assert resource == before


@pytest.mark.parametrize(
    ("change", "code", "path"),
    [
        ({"active": "true"}, "value", "Patient.active"),
        ({"active": 1}, "value", "Patient.active"),
        ({"multipleBirthInteger": 3.0}, "value", "Patient.multipleBirth.ofType(integer)"),
        ({"multipleBirthInteger": "3"}, "value", "Patient.multipleBirth.ofType(integer)"),
        ({"multipleBirthInteger": 2**31}, "value", "Patient.multipleBirth.ofType(integer)"),
        ({"birthDate": "1974-13-25"}, "value", "Patient.birthDate"),
        ({"birthDate": "2021-02-29"}, "value", "Patient.birthDate"),
        ({"birthDate": 19741225}, "value", "Patient.birthDate"),
        ({"gender": None}, "structure", "Patient.gender"),
        ({"gender": ""}, "value", "Patient.gender"),
        ({"gender": "male "}, "value", "Patient.gender"),
        ({"gender": "ma  le"}, "value", "Patient.gender"),
        ({"name": []}, "structure", "Patient.name"),
        ({"name": [{}]}, "structure", "Patient.name[0]"),
        ({"name": {"family": "x"}}, "structure", "Patient.name"),
        ({"name": ['{"family": "x"}']}, "structure", "Patient.name[0]"),
        ({"name": [{"family": ["x"]}]}, "structure", "Patient.name[0].family"),
        ({"name": [{"given": "x"}]}, "structure", "Patient.name[0].given"),
        ({"name": [{"given": ["a", None]}]}, "structure", "Patient.name[0].given[1]"),
        (
            {"name": [{"given": ["a"], "_given": [None, None]}]},
            "structure",
            "Patient.name[0].given",
        ),
        ({"bogus": 1}, "structure", "Patient.bogus"),
        ({"fhir_comments": "x"}, "structure", "Patient.fhir_comments"),
        ({"birthDate__ext": {"id": "x"}}, "structure", "Patient.birthDate__ext"),
        ({"deceasedDateTime": "2020"}, "invariant", "Patient.deceased[x]"),
        ({"id": "a" * 65}, "value", "Patient.id"),
        ({"id": "a b"}, "value", "Patient.id"),
        ({"meta": {"lastUpdated": "2020-01-01"}}, "value", "Patient.meta.lastUpdated"),
        ({"meta": {"versionId": 1}}, "value", "Patient.meta.versionId"),
        (
            {"_birthDate": {"extension": [{"url": "http://x", "valueDateTime": "nope"}]}},
            "value",
            "Patient.birthDate.extension[0].value.ofType(dateTime)",
        ),
        ({"extension": [{"url": "http://x"}]}, "invariant", "Patient.extension[0]"),
        (
            {
                "extension": [
                    {
                        "url": "http://x",
                        "valueString": "a",
                        "extension": [{"url": "y", "valueString": "b"}],
                    }
                ]
            },
            "invariant",
            "Patient.extension[0]",
        ),
        ({"extension": [{"valueString": "a"}]}, "required", "Patient.extension[0].url"),
        ({"contained": [{"id": "x"}]}, "required", "Patient.contained[0]"),
        ({"contained": [{"resourceType": "Foo"}]}, "not-supported", "Patient.contained[0]"),
        (
            {"contained": [{"resourceType": "Organization", "name": 5}]},
            "value",
            "Patient.contained[0].name",
        ),
        (
            {"managingOrganization": {"reference": "#org1", "extra": 1}},
            "structure",
            "Patient.managingOrganization.extra",
        ),
    ],
)
def test_invalid_elements_are_named_by_fhirpath(
    change: dict[str, Any], code: str, path: str
) -> None:
    resource = {**PATIENT, **change}
    assert (code, (path,)) in issues_of(resource)


@pytest.mark.parametrize(
    ("resource", "code", "path"),
    [
        (
            {**OBSERVATION, "valueString": "x", "valueBoolean": True},
            "invariant",
            "Observation.value[x]",
        ),
        (
            {
                **OBSERVATION,
                "component": [{"code": {"text": "x"}, "valueQuantity": {"value": "1.0"}}],
            },
            "value",
            "Observation.component[0].value.ofType(Quantity).value",
        ),
        (
            {**OBSERVATION, "effectiveDateTime": "2020-01-01T10:00:00"},
            "value",
            "Observation.effective.ofType(dateTime)",
        ),
        ({k: v for k, v in OBSERVATION.items() if k != "code"}, "required", "Observation.code"),
        ({k: v for k, v in OBSERVATION.items() if k != "status"}, "required", "Observation.status"),
        (
            {k: v for k, v in MEDICATION_REQUEST.items() if k != "medicationCodeableConcept"},
            "required",
            "MedicationRequest.medication[x]",
        ),
        (
            {"resourceType": "Encounter", "status": "finished", "class_fhir": {"code": "AMB"}},
            "structure",
            "Encounter.class_fhir",
        ),
        (
            {**BUNDLE, "entry": [{"resource": {"resourceType": "Patient", "bogus": 1}}]},
            "structure",
            "Bundle.entry[0].resource.bogus",
        ),
        (
            {"resourceType": "Binary", "contentType": "text/plain", "data": "not base64!"},
            "value",
            "Binary.data",
        ),
    ],
)
def test_invalid_resources(resource: dict[str, Any], code: str, path: str) -> None:
    assert (code, (path,)) in issues_of(resource)


def test_not_an_object_and_no_resource_type() -> None:
    assert issues_of([PATIENT]) == [("structure", ())]
    assert issues_of({"id": "x"}) == [("required", ())]
    assert issues_of({"resourceType": 5}) == [("required", ())]


@pytest.mark.parametrize(
    "rtype", ["Foo", "Resource", "DomainResource", "HumanName", "SubscriptionStatus", "Citation"]
)
def test_unknown_and_r4b_only_types_are_not_supported(rtype: str) -> None:
    assert issues_of({"resourceType": rtype}) == [("not-supported", ())]


def test_diagnostics_name_the_path_and_the_problem() -> None:
    with pytest.raises(InvalidResource) as caught:
        validate_resource({**PATIENT, "active": "true", "gender": None})
    first, second = caught.value.issues
    assert first.diagnostics == "Patient.active: Expected a JSON boolean, found string 'true'"
    assert second.diagnostics == "Patient.gender: null is not allowed; omit the element"
    assert caught.value.diagnostics.endswith("(and 1 more)")
    assert caught.value.outcome()["issue"][0]["expression"] == ["Patient.active"]


@pytest.mark.parametrize(
    ("div", "valid"),
    [
        ('<div xmlns="http://www.w3.org/1999/xhtml"><p>ok</p></div>', True),
        ("<div>no namespace, accepted</div>", True),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><img src="x.png"/></div>', True),
        ("plain text", False),
        ("<div><p>unclosed</div>", False),
        ('<div xmlns="http://www.w3.org/1999/xhtml">a&nbsp;b</div>', False),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>', False),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">a</p></div>', False),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:x()">a</a></div>', False),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><form/>a</div>', False),
        ('<div xmlns="http://www.w3.org/1999/xhtml">   </div>', False),
        ('<p xmlns="http://www.w3.org/1999/xhtml">a</p>', False),
    ],
)
def test_narrative_div(div: str, valid: bool) -> None:
    resource = {**PATIENT, "text": {"status": "generated", "div": div}}
    if valid:
        validate_resource(resource)
    else:
        assert ("value", ("Patient.text.div",)) in issues_of(resource)


def test_r4_elements_missing_from_r4b_are_accepted_and_r4b_additions_rejected() -> None:
    meta = {"url": "http://example.org/e", "valueMeta": {"versionId": "1"}}
    validate_resource({**PATIENT, "extension": [meta]}, deep=True)
    bad_meta = {"url": "http://example.org/e", "valueMeta": {"versionId": 1}}
    assert ("value", ("Patient.extension[0].value.ofType(Meta).versionId",)) in issues_of(
        {**PATIENT, "extension": [bad_meta]}
    )
    ratio_range = {"url": "http://example.org/e", "valueRatioRange": {"lowNumerator": {}}}
    assert ("structure", ("Patient.extension[0].valueRatioRange",)) in issues_of(
        {**PATIENT, "extension": [ratio_range]}
    )
    plan = {
        "resourceType": "PlanDefinition",
        "status": "draft",
        "subjectCanonical": "http://example.org/x",
    }
    assert ("structure", ("PlanDefinition.subjectCanonical",)) in issues_of(plan)


def test_uuid_of_any_version_as_r4_allows() -> None:
    version_1 = "urn:uuid:c757873d-ec9a-1326-a141-556f43239520"
    parameters: dict[str, Any] = {
        "resourceType": "Parameters",
        "parameter": [{"name": "a", "valueUuid": version_1}],
    }
    validate_resource(parameters, deep=True)
    parameters["parameter"][0]["valueUuid"] = "c757873d-ec9a-1326-a141-556f43239520"
    assert ("value", ("Parameters.parameter[0].value.ofType(uuid)",)) in issues_of(parameters)


def test_structure_only_types() -> None:
    assert NO_R4B_MODEL | {"Evidence", "EvidenceVariable"} <= STRUCTURE_ONLY_TYPES
    assert not STRUCTURE_ONLY_TYPES & R4B_ONLY_TYPES
    product = {
        "resourceType": "MedicinalProduct",
        "id": "m",
        "meta": {"versionId": "1"},
        "text": NARRATIVE,
        "name": [{"productName": "x"}],
    }
    assert validate_resource(product, deep=True) is product
    # their own R4 elements are checked too (R4 StructureDefinition of MedicinalProduct)
    assert issues_of({**product, "name": [{"productName": "x", "anything": [1]}]}) == [
        ("structure", ("MedicinalProduct.name[0].anything",))
    ]
    assert issues_of({**product, "name": [{"namePart": [{"part": "x"}]}]}) == [
        ("required", ("MedicinalProduct.name[0].namePart[0].type",)),
        ("required", ("MedicinalProduct.name[0].productName",)),
    ]
    assert ("value", ("MedicinalProduct.meta.versionId",)) in issues_of(
        {**product, "meta": {"versionId": ""}}
    )
    in_bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": product}]}
    validate_resource(in_bundle, deep=True)
    bad = {**product, "meta": {"lastUpdated": "yesterday"}}
    assert ("value", ("Bundle.entry[0].resource.meta.lastUpdated",)) in issues_of(
        {**in_bundle, "entry": [{"resource": bad}]}
    )


def test_the_r4_type_list_matches_the_documented_differences() -> None:
    if not validate.R4_TYPES_FILE.exists():
        pytest.skip("the generated R4 resource type list is not there yet")
    r4 = validate._load_r4_types()
    assert r4 is not None and len(r4) == 146
    assert NO_R4B_MODEL | {"Evidence", "EvidenceVariable"} == STRUCTURE_ONLY_TYPES
    assert not r4 & R4B_ONLY_TYPES
    assert all(is_resource_type(t) for t in r4)


# -- the walk against the models' own verdict ------------------------------------------------

REPLACEMENTS: list[Any] = [
    None,
    "",
    " ",
    "x",
    "true",
    1,
    0,
    -1,
    1.5,
    True,
    [],
    {},
    ["x"],
    [{}],
    [None],
    {"a": 1},
    {"text": "x"},
    "2020-02-30",
    "2020-01-01T10:00:00",
    "10:00",
    "urn:oid:1.2",
    "a b",
    2**31,
    "aGVsbG8=",
    "<div>x</div>",
]


def _paths(node: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, value in items:
        found.append((*prefix, key))
        found += _paths(value, (*prefix, key))
    return found


def _mutated(resource: dict[str, Any], rnd: random.Random) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    path = rnd.choice(_paths(out))
    node = out
    for key in path[:-1]:
        node = node[key]
    if isinstance(node, dict) and rnd.random() < 0.25:
        del node[path[-1]]
    else:
        node[path[-1]] = copy.deepcopy(rnd.choice(REPLACEMENTS))
    return out


@pytest.mark.parametrize("resource", VALID, ids=lambda r: r["resourceType"])
def test_whatever_the_walk_accepts_the_models_accept(resource: dict[str, Any]) -> None:
    rnd = random.Random(20240101)
    accepted = 0
    for _ in range(150):
        candidate = _mutated(resource, rnd)
        try:
            validate_resource(candidate)
        except InvalidResource:
            continue
        accepted += 1
        validate_resource(candidate, deep=True), json.dumps(candidate)
    assert accepted > 10


def test_absurd_nesting_is_refused_not_crashed() -> None:
    item: dict[str, Any] = {"linkId": "0", "type": "group"}
    top = item
    for level in range(1, 600):
        child = {"linkId": str(level), "type": "group"}
        item["item"] = [child]
        item = child
    issues = issues_of({"resourceType": "Questionnaire", "status": "draft", "item": [top]})
    assert [code for code, _ in issues] == ["too-long"]  # at the depth limit, with its path
