"""Reading inputs from the resolved prefetch (cds_hooks.models.inputs): which Observation
counts, Conditions as 0/1, and the prefetch templates."""

from __future__ import annotations

from cds_hooks.models.inputs import Unusable, Used, prefetch_templates, read
from cds_hooks.models.manifest import Input
from tests.unit.cds_models.fhir import JSON, NOW, RECENT, bundle, observation, patient

HDL = "http://loinc.org|2085-9"
DIABETES = "http://snomed.info/sct|44054006"
HDL_INPUT = Input(name="hdl", source="observation", code=HDL, unit="mg/dL", max_age_days=30)
DIABETES_INPUT = Input(name="dm", source="condition", codes=(DIABETES,))


def condition(status: str | None, code: str = DIABETES) -> JSON:
    system, _, value = code.partition("|")
    found: JSON = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": system, "code": value}]},
    }
    if status:
        clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
        found["clinicalStatus"] = {"coding": [{"system": clinical, "code": status}]}
    return found


def reading(*resources: JSON, item: Input = HDL_INPUT):
    key = "conditions" if item.source == "condition" else "hdl"
    return read((item,), {key: bundle(*resources), "patient": patient()}, NOW)[0]


def test_an_active_condition_with_a_listed_code_is_one_else_zero() -> None:
    assert reading(condition("active"), item=DIABETES_INPUT) == Used(
        DIABETES_INPUT, 1.0, found="present"
    )
    for absent in (condition("resolved"), condition("active", "http://snomed.info/sct|1")):
        assert isinstance(used := reading(absent, item=DIABETES_INPUT), Used)
        assert used.value == 0.0
    none = read((DIABETES_INPUT,), {"conditions": None}, NOW)[0]
    assert isinstance(none, Used) and none.value == 0.0


def test_observations_without_a_date_or_not_final_are_not_used() -> None:
    undated = observation(HDL, 50, "mg/dL")
    del undated["effectiveDateTime"]
    wrong = observation(HDL, 50, "mg/dL") | {"status": "entered-in-error"}
    assert reading(undated, wrong) == Unusable(HDL_INPUT, "missing")


def test_issued_stands_in_for_a_missing_effective_date() -> None:
    found = observation(HDL, 50, "mg/dL")
    del found["effectiveDateTime"]
    found["issued"] = RECENT
    assert isinstance(used := reading(found), Used) and used.value == 50


def test_a_value_without_a_unit_is_unusable() -> None:
    found = observation(HDL, 50, "mg/dL")
    found["valueQuantity"] = {"value": 50}
    assert reading(found) == Unusable(HDL_INPUT, "the value of 2026-05-20 has no number or no unit")


def test_templates_read_the_patient_each_code_once_and_the_conditions() -> None:
    age = Input(name="age", source="patient-age")
    again = Input(name="hdl2", source="observation", code=HDL, unit="mmol/L")
    templates = prefetch_templates((age, HDL_INPUT, again, DIABETES_INPUT))
    assert templates == {
        "patient": "Patient/{{context.patientId}}",
        "hdl": "Observation?patient={{context.patientId}}&code=http://loinc.org|2085-9"
        "&_sort=-date&_count=10",
        "conditions": "Condition?patient={{context.patientId}}&code=http://snomed.info/sct|44054006",
    }


def test_malformed_prefetch_reads_as_missing_and_never_raises() -> None:
    weird: list[JSON] = [
        {"resourceType": "Bundle", "entry": "not a list"},
        {"resourceType": "Bundle", "entry": [1, "x", None, {"resource": "x"}]},
        bundle({"resourceType": "Observation", "status": "final", "code": "2085-9"}),
        bundle(
            observation(HDL, 50, "mg/dL")
            | {"effectivePeriod": "x", "component": 3, "effectiveDateTime": None}
        ),
        bundle(observation(HDL, 50, "mg/dL") | {"effectiveDateTime": "yesterday"}),
        bundle(observation(HDL, 50, "mg/dL") | {"valueQuantity": "50 mg/dL"}),
        bundle(observation(HDL, True, "mg/dL")),
        bundle(observation(HDL, 1e300, "mg/dL")),
    ]
    age = Input(name="age", source="patient-age")
    sex = Input(name="sex", source="patient-gender", values={"female": 1.0})
    for found in weird:
        readings = read(
            (HDL_INPUT, age, sex, DIABETES_INPUT),
            {"hdl": found, "patient": {"resourceType": "Patient", "gender": ["female"]},
             "conditions": found},
            NOW,
        )  # fmt: skip
        assert [type(r) for r in readings] == [Unusable, Unusable, Unusable, Used], found
