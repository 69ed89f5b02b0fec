"""ValueSet $validate-code."""

from __future__ import annotations

import pytest

from fhir_server.errors import BadRequest, NotFound
from terminology import Terminology
from tests.unit.terminology.samples import COLORS, GENDER, GENDER_VS, ROLE_CODE, params

SIBLINGS = "http://hl7.org/fhir/ValueSet/sibling-relationship-codes"


def test_code_in_value_set(core: Terminology) -> None:
    assert params(core.validate_code_in_value_set(GENDER_VS, code="male", system=GENDER)) == {
        "result": True,
        "display": "Male",
    }


def test_code_not_in_value_set(core: Terminology) -> None:
    result = params(core.validate_code_in_value_set(GENDER_VS, code="M", system=GENDER))
    assert (
        result["result"] is False
        and "'http://hl7.org/fhir/administrative-gender#M'" in (result["message"])
    )


def test_wrong_display_is_a_warning(core: Terminology) -> None:
    result = params(
        core.validate_code_in_value_set(GENDER_VS, code="female", system=GENDER, display="Woman")
    )
    assert result["result"] is True
    assert "Woman" in result["message"] and result["display"] == "Female"


def test_is_a_value_set(core: Terminology) -> None:
    ok = core.validate_code_in_value_set(SIBLINGS, coding={"system": ROLE_CODE, "code": "HBRO"})
    assert params(ok)["result"] is True
    no = core.validate_code_in_value_set(SIBLINGS, coding={"system": ROLE_CODE, "code": "MTH"})
    assert params(no)["result"] is False


def test_codeable_concept_any_coding(core: Terminology) -> None:
    concept = {
        "coding": [
            {"system": "http://example.org", "code": "x"},
            {"system": GENDER, "code": "other"},
        ]
    }
    result = params(core.validate_code_in_value_set(GENDER_VS, codeable_concept=concept))
    assert result == {"result": True, "display": "Other"}
    bad = {"coding": [{"system": GENDER, "code": "nope"}]}
    assert (
        params(core.validate_code_in_value_set(GENDER_VS, codeable_concept=bad))["result"] is False
    )


def test_unknown_system_cannot_be_validated(core: Terminology) -> None:
    result = params(
        core.validate_code_in_value_set(
            "http://hl7.org/fhir/ValueSet/observation-codes",
            code="1234-5",
            system="http://loinc.org",
        )
    )
    assert result["result"] is False and "Cannot tell" in result["message"]


def test_inline_value_set_and_designation_display(local: Terminology) -> None:
    inline = {"resourceType": "ValueSet", "compose": {"include": [{"system": COLORS}]}}
    result = params(
        local.validate_code_in_value_set(inline, code="blue", system=COLORS, display="Bleu")
    )
    assert result == {"result": True, "display": "Blue"}


def test_errors(core: Terminology) -> None:
    with pytest.raises(NotFound):
        core.validate_code_in_value_set("http://example.org/none", code="x", system=GENDER)
    with pytest.raises(BadRequest):
        core.validate_code_in_value_set(GENDER_VS)
    with pytest.raises(BadRequest):
        core.validate_code_in_value_set(GENDER_VS, coding={"system": GENDER})
    with pytest.raises(BadRequest):
        core.validate_code_in_value_set(GENDER_VS, codeable_concept={"coding": "male"})
