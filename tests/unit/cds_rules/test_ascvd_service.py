"""The `ascvd-10-year-risk` service over HookCalls: inputs present, missing, too old, in
other units; every card checked against the expected band."""

from __future__ import annotations

import pytest

from cds_hooks.rules import services
from cds_hooks.rules.ascvd import AscvdRisk
from tests.unit.cds_rules.records import (
    RXNORM,
    SNOMED,
    bp_panel,
    bundle,
    call,
    clock,
    condition,
    medication,
    patient,
    quantity_obs,
    smoking,
)

NON_SMOKER = "8517006"  # ex-smoker
CURRENT = "449868002"  # current every-day smoker


@pytest.fixture
def service() -> AscvdRisk:
    found = [s for s in services(clock=clock) if s.definition.id == "ascvd-10-year-risk"]
    assert isinstance(found[0], AscvdRisk)
    return found[0]


def labs(tc=213.0, hdl=50.0, sbp=120.0, smoker=NON_SMOKER, unit="mg/dL", lab_days=30, bp_days=30):
    return [
        quantity_obs("2093-3", tc, unit, lab_days),
        quantity_obs("2085-9", hdl, unit, lab_days),
        quantity_obs("8480-6", sbp, "mm[Hg]", bp_days),
        smoking(smoker),
    ]


def evaluate(service, person=None, observations=None, conditions=(), medications=()):
    response = service.evaluate(
        call(
            patient=person if person is not None else patient(),
            observations=bundle(*(labs() if observations is None else observations)),
            conditions=bundle(*conditions),
            medications=bundle(*medications),
        )
    )
    assert len(response.cards) == 1
    card = response.cards[0]
    body = card.to_json()  # the spec's rules hold for every card
    assert len(body["summary"]) < 140 and body["source"]["label"]
    return card


def test_the_published_profile_gives_its_band_and_no_suggestion(service):
    card = evaluate(service, patient(55, "male", "2106-3"))
    assert card.summary == "10-year ASCVD risk 5.4 % (borderline)"
    assert card.indicator == "info" and not card.suggestions
    assert "213 mg/dL on 2026-05-16" in card.detail
    assert "White (white equations)" in card.detail


def test_african_american_equations_follow_the_race_extension(service):
    card = evaluate(service, patient(55, "female", "2054-5"))
    assert card.summary == "10-year ASCVD risk 3.0 % (low)"
    assert "African-American equations" in card.detail


def test_other_or_unknown_race_uses_the_white_equations_and_says_so(service):
    asian = evaluate(service, patient(55, "female", "2028-9"))
    unknown = evaluate(service, patient(55, "female", None))
    assert asian.summary == unknown.summary == "10-year ASCVD risk 2.1 % (low)"
    assert "white equations are used, as the guideline advises" in asian.detail


def test_mmol_per_litre_is_converted(service):
    card = evaluate(service, observations=labs(tc=213 / 38.67, hdl=50 / 38.67, unit="mmol/L"))
    assert card.summary == "10-year ASCVD risk 5.4 % (borderline)"
    assert "5.50815 mmol/L (213 mg/dL)" in card.detail


def test_a_unit_that_cannot_be_converted_is_missing_input(service):
    card = evaluate(service, observations=labs(unit="g/L"))
    assert "not estimated" in card.summary and "%" not in card.summary
    assert "unit 'g/L' cannot be converted to mg/dL" in card.detail


def test_systolic_pressure_from_a_blood_pressure_panel(service):
    observations = [*labs()[:2], bp_panel(160), smoking(NON_SMOKER)]
    card = evaluate(service, patient(60, "male"), observations)
    assert card.summary.startswith("10-year ASCVD risk") and "160 mm[Hg]" in card.detail


def test_the_newest_result_is_used(service):
    observations = [
        *labs(),
        quantity_obs("8480-6", 170, "mm[Hg]", 400),
        quantity_obs("8480-6", 150, "mm[Hg]", 2),
    ]
    card = evaluate(service, patient(55, "male"), observations)
    assert "150 mm[Hg]" in card.detail and "170" not in card.detail


@pytest.mark.parametrize("drop", ["2093-3", "2085-9", "8480-6", "72166-2"])
def test_a_missing_input_gives_no_risk_and_says_what_is_missing(service, drop):
    observations = [o for o in labs() if o["code"]["coding"][0]["code"] != drop]
    card = evaluate(service, observations=observations)
    assert card.summary.startswith("10-year ASCVD risk not estimated: missing or outdated")
    assert f"none on record ({drop})" in card.detail
    assert "%" not in card.summary and not card.suggestions


def test_too_old_inputs_say_the_limit(service):
    card = evaluate(service, observations=labs(lab_days=6 * 365, bp_days=400))
    assert card.summary == (
        "10-year ASCVD risk not estimated: missing or outdated Total cholesterol, HDL cholesterol, "
        "Systolic blood pressure"
    )
    assert "older than the 5 years limit" in card.detail
    assert "older than the 1 year limit" in card.detail


def test_missing_sex_and_birth_date_are_missing_inputs(service):
    card = evaluate(service, patient(None, "unknown"))
    assert "Age, Sex" in card.summary
    assert "no birth date on record" in card.detail and "recorded as 'unknown'" in card.detail


@pytest.mark.parametrize("age", [35, 39, 80, 90])
def test_ages_outside_40_to_79_are_refused_with_the_reason(service, age):
    card = evaluate(service, patient(age, "male"))
    assert (
        card.summary
        == "10-year ASCVD risk not estimated: the Pooled Cohort Equations apply to ages 40-79"
    )
    assert f"The patient is {age}." in card.detail and not card.suggestions


def test_smoking_raises_the_band_and_suggests_a_statin(service):
    card = evaluate(service, patient(55, "male", "2106-3"), labs(smoker=CURRENT))
    assert card.summary == "10-year ASCVD risk 10.0 % (intermediate)"
    assert card.indicator == "warning" and card.selection_behavior == "at-most-one"
    (suggestion,) = card.suggestions
    (action,) = suggestion.actions
    order = action.resource
    assert action.type == "create" and order["resourceType"] == "MedicationRequest"
    assert order["status"] == "draft" and order["subject"] == {"reference": "Patient/p1"}
    assert order["medicationCodeableConcept"]["coding"][0]["code"] == "83367"
    reasons = card.to_json()["overrideReasons"]
    assert reasons and all(r["display"] for r in reasons)


def test_a_statin_on_the_medication_list_means_no_suggestion(service):
    statin = medication("83367", "atorvastatin")
    card = evaluate(service, patient(55, "male"), labs(smoker=CURRENT), medications=[statin])
    assert card.indicator == "warning" and not card.suggestions and card.selection_behavior is None
    assert "Statin: atorvastatin" in card.detail


def test_a_stopped_statin_does_not_count(service):
    statin = medication("83367", "atorvastatin", status="stopped")
    card = evaluate(service, patient(55, "male"), labs(smoker=CURRENT), medications=[statin])
    assert card.suggestions


def test_an_antihypertensive_makes_the_pressure_treated(service):
    amlodipine = medication("197361", "amlodipine 5 MG Oral Tablet")
    card = evaluate(service, patient(55, "male", "2054-5"), medications=[amlodipine])
    assert card.summary == "10-year ASCVD risk 9.9 % (intermediate)"
    assert "Blood pressure treatment: yes (amlodipine 5 MG Oral Tablet)" in card.detail


def test_diabetes_by_value_set_and_only_while_it_applies(service):
    active = condition(SNOMED, "44054006", "Diabetes mellitus type 2")
    resolved = condition(SNOMED, "44054006", "Diabetes mellitus type 2", status="resolved")
    with_diabetes = evaluate(service, patient(55, "female"), conditions=[active])
    without = evaluate(service, patient(55, "female"), conditions=[resolved])
    assert "Diabetes: yes" in with_diabetes.detail and "Diabetes: no" in without.detail
    assert with_diabetes.summary == "10-year ASCVD risk 3.9 % (low)"
    assert without.summary == "10-year ASCVD risk 2.1 % (low)"


def test_high_band(service):
    observations = labs(tc=280, hdl=35, sbp=170, smoker=CURRENT)
    card = evaluate(
        service, patient(70, "male"), observations, medications=[medication("29046", "lisinopril")]
    )
    assert card.summary.endswith("(high)") and card.indicator == "warning"


def test_no_patient_record_is_missing_age_and_sex(service):
    response = service.evaluate(
        call(patient=None, observations=None, conditions=None, medications=None)
    )
    (card,) = response.cards
    assert "not estimated" in card.summary and "Age, Sex" in card.summary


def test_the_definition_asks_for_what_the_service_reads(service):
    prefetch = service.definition.discovery()["prefetch"]
    assert set(prefetch) == {"patient", "observations", "conditions", "medications"}
    assert "http://loinc.org|2093-3" in prefetch["observations"]
    assert "http://loinc.org|55284-4" in prefetch["observations"]
    assert RXNORM not in prefetch["medications"]


def test_a_zero_or_negative_value_is_refused_not_a_crash(service):
    card = evaluate(service, observations=labs(hdl=0, sbp=-120))
    assert "not estimated" in card.summary
    assert "the value 0 is not a positive amount" in card.detail
    assert "the value -120 is not a positive pressure" in card.detail


@pytest.mark.parametrize(
    "junk",
    [
        {"resourceType": "Bundle", "entry": "x"},
        {
            "resourceType": "Bundle",
            "entry": [None, 1, {"resource": "x"}, {"resource": {"code": 3}}],
        },
        {
            "resourceType": "Bundle",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Observation",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "2085-9"}]},
                        "effectiveDateTime": "not a date",
                        "valueQuantity": {"value": True, "unit": "mg/dL"},
                        "component": ["x"],
                    }
                }
            ],
        },
    ],
)
def test_malformed_prefetch_reads_as_missing(service, junk):
    strange_patient = {
        "resourceType": "Patient",
        "birthDate": "19xx",
        "gender": 5,
        "extension": [1, {"url": 2}],
    }
    response = service.evaluate(
        call(patient=strange_patient, observations=junk, conditions=junk, medications=junk)
    )
    (card,) = response.cards
    assert "not estimated" in card.summary


def test_a_patient_with_clinical_ascvd_gets_no_primary_prevention_estimate(service):
    old_mi = condition("http://hl7.org/fhir/sid/icd-10-cm", "I25.2", "Old myocardial infarction")
    card = evaluate(service, patient(55, "male"), labs(smoker=CURRENT), conditions=[old_mi])
    assert card.summary == "10-year ASCVD risk not estimated: the patient has clinical ASCVD"
    assert "On record: Old myocardial infarction." in card.detail and not card.suggestions
    past_tia = condition(SNOMED, "266257000", "Transient ischemic attack", status="resolved")
    assert evaluate(service, patient(55, "male"), conditions=[past_tia]).summary == card.summary
    refuted = condition(SNOMED, "266257000", "Transient ischemic attack")
    refuted["verificationStatus"] = {"coding": [{"code": "refuted"}]}
    assert "%" in evaluate(service, patient(55, "male"), conditions=[refuted]).summary


def test_a_statin_coded_as_a_product_counts_too(service):
    simvastatin = medication("312961", "simvastatin 20 MG Oral Tablet")
    card = evaluate(service, patient(55, "male"), labs(smoker=CURRENT), medications=[simvastatin])
    assert not card.suggestions and "Statin: simvastatin 20 MG Oral Tablet" in card.detail
