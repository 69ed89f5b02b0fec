"""FHIRPath Patch and JSON Patch (fhir_server.model.fhirpath_patch).

The FHIRPath Patch vectors in tests/vectors/fhirpatch/ were written by hand from
https://hl7.org/fhir/R4/fhirpatch.html and the patch test cases it links.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.errors import BadRequest, FhirError, InvalidResource, Unprocessable
from fhir_server.model.fhirpath_patch import apply_fhirpath_patch, apply_json_patch
from fhir_server.model.validate import validate_resource

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "fhirpatch"
CASES = json.loads((VECTORS / "cases.json").read_text(encoding="utf-8"))["cases"]
ERRORS = json.loads((VECTORS / "errors.json").read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_fhirpath_patch_vectors(case: dict[str, Any]) -> None:
    before = copy.deepcopy(case["input"])
    result = apply_fhirpath_patch(case["input"], case["patch"])
    assert result == case["output"]
    assert case["input"] == before  # the input is not touched
    validate_resource(result)


@pytest.mark.parametrize("case", ERRORS, ids=[c["name"] for c in ERRORS])
def test_fhirpath_patch_errors(case: dict[str, Any]) -> None:
    before = copy.deepcopy(case["input"])
    with pytest.raises(FhirError) as caught:
        apply_fhirpath_patch(case["input"], case["patch"])
    assert caught.value.status == case["status"]
    assert case["diagnostics"] in caught.value.diagnostics
    assert case["input"] == before


def _operation(**parts: object) -> dict[str, Any]:
    encoded = []
    for name, value in parts.items():
        if name in ("index", "source", "destination"):
            encoded.append({"name": name, "valueInteger": value})
        elif name == "value":
            encoded.append({"name": "value", **value})  # type: ignore[dict-item]
        else:
            encoded.append({"name": name, "valueString" if name != "type" else "valueCode": value})
    return {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": encoded}]}


def test_the_body_must_be_a_valid_parameters_resource() -> None:
    with pytest.raises(BadRequest):
        apply_fhirpath_patch({"resourceType": "Patient"}, {"resourceType": "Patient"})
    with pytest.raises(InvalidResource):
        apply_fhirpath_patch(
            {"resourceType": "Patient"},
            {"resourceType": "Parameters", "parameter": {"name": "operation"}},
        )


def test_negative_index_is_a_400() -> None:
    patch = _operation(
        type="insert",
        path="Patient.identifier",
        index=-1,
        value={"valueIdentifier": {"value": "x"}},
    )
    with pytest.raises(BadRequest):
        apply_fhirpath_patch({"resourceType": "Patient"}, patch)


def test_a_wrong_value_type_is_left_to_validation() -> None:
    patch = _operation(type="replace", path="Patient.birthDate", value={"valueBoolean": True})
    result = apply_fhirpath_patch({"resourceType": "Patient", "birthDate": "1970"}, patch)
    with pytest.raises(InvalidResource):
        validate_resource(result)


def test_replace_through_a_function_that_keeps_the_element() -> None:
    patch = _operation(
        type="replace", path="Patient.name.first()", value={"valueHumanName": {"family": "x"}}
    )
    result = apply_fhirpath_patch({"resourceType": "Patient", "name": [{"family": "a"}]}, patch)
    assert result["name"] == [{"family": "x"}]


def test_primitive_placeholders_do_not_count_as_matches() -> None:
    patient = {
        "resourceType": "Patient",
        "name": [
            {
                "given": ["a", "b"],
                "_given": [
                    None,
                    {"extension": [{"url": "http://example.org/x", "valueString": "y"}]},
                ],
            }
        ],
    }
    patch = _operation(type="replace", path="Patient.name.given[0]", value={"valueString": "z"})
    assert apply_fhirpath_patch(patient, patch)["name"][0]["given"] == ["z", "b"]


# -- JSON Patch -----------------------------------------------------------------------------

PATIENT = {
    "resourceType": "Patient",
    "id": "p",
    "active": True,
    "name": [{"family": "Chalmers", "given": ["Peter"]}],
}


def test_json_patch_applies_in_order_without_touching_the_input() -> None:
    before = copy.deepcopy(PATIENT)
    result = apply_json_patch(
        PATIENT,
        [
            {"op": "test", "path": "/active", "value": True},
            {"op": "replace", "path": "/active", "value": False},
            {"op": "add", "path": "/name/0/given/-", "value": "James"},
            {"op": "remove", "path": "/name/0/family"},
            {"op": "copy", "from": "/name/0", "path": "/name/-"},
            {"op": "move", "from": "/active", "path": "/gender"},
        ],
    )
    assert result == {
        "resourceType": "Patient",
        "id": "p",
        "gender": False,
        "name": [{"given": ["Peter", "James"]}, {"given": ["Peter", "James"]}],
    }
    assert before == PATIENT


@pytest.mark.parametrize(
    ("patch", "error"),
    [
        ([{"op": "test", "path": "/active", "value": False}], Unprocessable),
        ([{"op": "remove", "path": "/birthDate"}], Unprocessable),
        ([{"op": "replace", "path": "/name/5/family", "value": "x"}], Unprocessable),
        ([{"op": "add", "path": "/name/9", "value": {}}], Unprocessable),
        ([{"op": "replace", "path": "", "value": []}], Unprocessable),
        ([{"op": "frobnicate", "path": "/active"}], BadRequest),
        ([{"path": "/active", "value": 1}], BadRequest),
        ([{"op": "add", "path": "/active"}], BadRequest),
        (["not an object"], BadRequest),
        ({"op": "add"}, BadRequest),
    ],
)
def test_json_patch_errors(patch: object, error: type[FhirError]) -> None:
    with pytest.raises(error) as caught:
        apply_json_patch(PATIENT, patch)  # type: ignore[arg-type]
    assert caught.type is error
    assert caught.value.status == (422 if error is Unprocessable else 400)


def test_json_patch_value_nested_beyond_the_stack_is_a_400() -> None:
    value: dict[str, Any] = {}
    for _ in range(2000):  # built without recursion; copying it needs more than the stack
        value = {"a": value}
    with pytest.raises(BadRequest, match="nested too deeply"):
        apply_json_patch(PATIENT, [{"op": "add", "path": "/extension", "value": value}])


@pytest.mark.parametrize(
    "patch",
    [
        [{"op": "test", "path": "/name/0/family", "value": "Chalmerz"}],
        [{"op": "remove", "path": "/name/0/family/x"}],
        [{"op": "replace", "path": "/name/0/prefix", "value": ["Mr"]}],
        [{"op": "copy", "from": "/name/0/suffix", "path": "/x"}],
        [{"op": "move", "from": "/name/0/given/5", "path": "/x"}],
        [{"op": "add", "path": "/name/0/given/9", "value": "x"}],
        [{"op": "add", "path": "/active/deeper", "value": "x"}],
    ],
)
def test_json_patch_errors_never_quote_the_resource(patch: list[dict[str, Any]]) -> None:
    """The library's messages quote the document; a caller who may update a resource may
    still not be cleared to read all of it."""
    with pytest.raises(FhirError) as caught:
        apply_json_patch(PATIENT, patch)
    message = str(caught.value)
    assert not any(s in message for s in ("Chalmers", "Peter", "resourceType", "True")), message
    assert f"{patch[0]['op']} {patch[0]['path']}" in message  # names what the client sent


def test_json_patch_operation_members_that_are_no_strings_are_named_by_type() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(BadRequest) as caught:
        apply_json_patch(PATIENT, [{"op": "add", "path": deep, "value": 1}])
    assert "(add <list>)" in str(caught.value)
