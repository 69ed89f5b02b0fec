"""CHA2DS2-VASc against hand-computed examples (Lip et al. 2010: C 1, H 1, A2 2, D 1, S2 2,
V 1, A 1, Sc 1)."""

from __future__ import annotations

import pytest

from cds_hooks.rules import services
from cds_hooks.rules.cha2ds2vasc import Cha2ds2Vasc
from tests.unit.cds_rules.records import SNOMED, bundle, call, clock, condition, patient

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
AF = condition(SNOMED, "49436004", "Atrial fibrillation")
CHF = condition(SNOMED, "42343007", "Congestive heart failure")
HTN = condition(ICD10, "I10", "Essential (primary) hypertension")
DM = condition(SNOMED, "44054006", "Diabetes mellitus type 2")
STROKE = condition(SNOMED, "230690007", "Cerebrovascular accident")
MI = condition(ICD10, "I25.2", "Old myocardial infarction")


@pytest.fixture
def service() -> Cha2ds2Vasc:
    found = [s for s in services(clock=clock) if s.definition.id == "cha2ds2-vasc"]
    assert isinstance(found[0], Cha2ds2Vasc)
    return found[0]


@pytest.mark.parametrize(
    ("age", "sex", "conditions", "score", "band", "rate"),
    [
        (60, "male", [AF], 0, "low", "0.0"),  # nothing
        (60, "female", [AF], 1, "low", "1.3"),  # Sc 1: sex alone, still low
        (68, "male", [AF], 1, "moderate", "1.3"),  # A 1
        (66, "female", [AF], 2, "moderate", "2.2"),  # A 1 + Sc 1
        (72, "female", [AF, HTN, DM], 4, "high", "4.0"),  # A 1 + Sc 1 + H 1 + D 1
        (80, "male", [AF, STROKE, CHF, MI], 6, "high", "9.8"),  # A2 2 + S2 2 + C 1 + V 1
        (78, "female", [AF, CHF, HTN, DM, STROKE, MI], 9, "high", "15.2"),  # every item
        (50, "male", [AF, HTN], 1, "moderate", "1.3"),  # H 1
    ],
)
def test_hand_computed_examples(service, age, sex, conditions, score, band, rate):
    response = service.evaluate(call(patient=patient(age, sex), conditions=bundle(*conditions)))
    (card,) = response.cards
    assert card.summary == f"CHA2DS2-VASc {score}: {band} stroke risk (about {rate} %/year)"
    assert card.indicator == ("warning" if band == "high" else "info")
    assert card.to_json()["source"]["label"] == "2019 AHA/ACC/HRS atrial fibrillation guideline"


def test_the_card_names_what_counted_and_the_guideline_advice(service):
    response = service.evaluate(call(patient=patient(72, "female"), conditions=bundle(AF, HTN, DM)))
    detail = response.cards[0].detail
    assert "Oral anticoagulants are recommended" in detail
    assert "Hypertension (H): yes (Essential (primary) hypertension)" in detail
    assert "Congestive heart failure (C): no (none on record)" in detail


def test_no_atrial_fibrillation_no_card(service):
    response = service.evaluate(call(patient=patient(80, "male"), conditions=bundle(CHF, HTN)))
    assert response.cards == ()


def test_resolved_or_refuted_conditions_do_not_count(service):
    resolved_af = condition(SNOMED, "49436004", "Atrial fibrillation", status="resolved")
    assert (
        service.evaluate(call(patient=patient(70, "male"), conditions=bundle(resolved_af))).cards
        == ()
    )
    refuted = dict(condition(SNOMED, "230690007", "Cerebrovascular accident"))
    refuted["verificationStatus"] = {"coding": [{"code": "refuted"}]}
    (card,) = service.evaluate(
        call(patient=patient(60, "male"), conditions=bundle(AF, refuted))
    ).cards
    assert card.summary.startswith("CHA2DS2-VASc 0:")


def test_missing_age_or_sex_gives_no_score(service):
    response = service.evaluate(call(patient=patient(None, None), conditions=bundle(AF)))
    (card,) = response.cards
    assert card.summary == "CHA2DS2-VASc not calculated: missing Age, Sex"
    assert "no birth date on record" in card.detail


def test_no_conditions_at_all(service):
    assert service.evaluate(call(patient=patient(70, "male"), conditions=None)).cards == ()


def test_malformed_conditions_read_as_absent(service):
    junk = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"resourceType": "Condition", "code": "AF", "clinicalStatus": 7}},
            {"resource": {"resourceType": "Condition", "code": {"coding": [None, {"system": 1}]}}},
            {"resource": AF},
        ],
    }
    (card,) = service.evaluate(
        call(patient={"resourceType": "Patient", "birthDate": 1950}, conditions=junk)
    ).cards
    assert card.summary == "CHA2DS2-VASc not calculated: missing Age, Sex"


def test_a_past_stroke_counts_but_a_resolved_hypertension_does_not(service):
    old_stroke = condition(SNOMED, "230690007", "Cerebrovascular accident", status="resolved")
    old_htn = condition(ICD10, "I10", "Essential (primary) hypertension", status="resolved")
    conditions = bundle(AF, old_stroke, old_htn)
    (card,) = service.evaluate(call(patient=patient(60, "male"), conditions=conditions)).cards
    assert card.summary.startswith("CHA2DS2-VASc 2:")  # S2 only
    assert "Hypertension (H): no" in card.detail
