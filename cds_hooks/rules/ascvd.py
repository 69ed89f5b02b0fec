"""`patient-view` "10-year ASCVD risk": the Pooled Cohort Equations on the patient's record.

Inputs: age and sex (Patient), race (US Core race extension: `ombCategory` 2054-5 takes the
African-American equations, 2106-3 and every other or unknown race the white ones, as the
guideline advises, and the card says so), total cholesterol 2093-3 and HDL 2085-9 (mg/dL, or
mmol/L converted), systolic BP 8480-6 (mm[Hg], alone or as a component of a BP panel), smoking
status 72166-2 (its SNOMED answers), diabetes (an applying Condition in the diabetes value
set) and treated blood pressure (an active MedicationRequest in the antihypertensive value
set). A lab or blood pressure older than its limit counts as missing.

Answers: one card. Ages outside 40-79 are refused with the reason, and so is a patient with
clinical ASCVD (a Condition in the clinical-ascvd value set, past events included, unless
refuted or entered in error: the equations are for a first event); a missing or outdated
input gives no risk, only what is missing; otherwise the risk and its band (2018 ACC/AHA
cholesterol guideline: low < 5 %, borderline 5-7.4 %, intermediate 7.5-19.9 %, high >= 20 %),
and, from 7.5 % with no statin on the medication list, a suggestion to create a draft statin
order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from cds_hooks.rules import pooled_cohort as pce
from cds_hooks.rules import valuesets as vs
from cds_hooks.rules.fhirdata import (
    JSON,
    LOINC,
    SNOMED,
    concept_name,
    condition_applies,
    condition_recorded,
    entries,
    has_code,
    quantity,
)
from cds_hooks.rules.findings import Finding, latest_observation, summary_list
from cds_hooks.rules.patient import OMB_BLACK, age, omb_race_codes, sex
from cds_hooks.rules.statin_order import statin_suggestion
from cds_hooks.service import Card, CdsResponse, HookCall, ServiceDefinition

TOTAL_CHOLESTEROL, HDL, SYSTOLIC_BP, SMOKING = ("2093-3", "2085-9", "8480-6", "72166-2")
BP_PANELS = ("85354-9", "55284-4")  # systolic BP arrives as a component of these too
LIPID_LIMIT = timedelta(days=5 * 365)
BP_LIMIT = timedelta(days=365)
SMOKING_LIMIT = timedelta(days=365)
MG_DL_PER_MMOL_L = 38.67  # cholesterol, molar mass 386.65 g/mol

# SNOMED answers of LOINC 72166-2 (the US Core smoking status value set).
CURRENT_SMOKER = frozenset(
    {"449868002", "428041000124106", "77176002", "428071000124103", "428061000124105"}
)
NOT_SMOKER = frozenset({"8517006", "266919005"})

SOURCE = "ACC/AHA Pooled Cohort Equations (Goff et al. 2013)"
SOURCE_URL = "https://doi.org/10.1161/01.cir.0000437741.48606.98"

_CODES = ",".join(
    f"{LOINC}|{c}" for c in (TOTAL_CHOLESTEROL, HDL, SYSTOLIC_BP, *BP_PANELS, SMOKING)
)
DEFINITION = ServiceDefinition(
    id="ascvd-10-year-risk",
    hook="patient-view",
    title="10-year ASCVD risk",
    description=(
        "Estimates the 10-year risk of a first hard atherosclerotic cardiovascular disease "
        "event with the ACC/AHA Pooled Cohort Equations (ages 40-79) and suggests a statin "
        "order from 7.5 % when none is on the medication list."
    ),
    prefetch={
        "patient": "Patient/{{context.patientId}}",
        "observations": (
            "Observation?patient={{context.patientId}}&code=" + _CODES + "&_sort=-date&_count=200"
        ),
        "conditions": "Condition?patient={{context.patientId}}",
        "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
    },
)


def _cholesterol(value: object) -> tuple[float, str] | str:
    amount = quantity(value)
    if amount is None:
        return "no numeric value with a unit"
    if amount.value <= 0:
        return f"the value {amount.value:g} is not a positive amount"
    unit = amount.unit.lower()
    if unit == "mg/dl":
        return amount.value, amount.text()
    if unit == "mmol/l":
        converted = amount.value * MG_DL_PER_MMOL_L
        return converted, f"{amount.text()} ({converted:.0f} mg/dL)"
    return f"unit '{amount.unit}' cannot be converted to mg/dL"


def _pressure(value: object) -> tuple[float, str] | str:
    amount = quantity(value)
    if amount is None:
        return "no numeric value with a unit"
    if amount.value <= 0:
        return f"the value {amount.value:g} is not a positive pressure"
    if amount.unit.lower() in ("mm[hg]", "mmhg"):
        return amount.value, f"{amount.value:g} mm[Hg]"
    return f"unit '{amount.unit}' is not mm[Hg]"


def _smoking(value: object) -> tuple[bool, str] | str:
    if has_code(value, SNOMED, CURRENT_SMOKER):
        return True, "current smoker"
    if has_code(value, SNOMED, NOT_SMOKER):
        return False, "not a current smoker"
    return "the answer does not say whether the patient smokes now"


# (label, LOINC code, oldest acceptable age, reader) of the Observations the equations need.
LAB_INPUTS = (
    ("Total cholesterol", TOTAL_CHOLESTEROL, LIPID_LIMIT, _cholesterol),
    ("HDL cholesterol", HDL, LIPID_LIMIT, _cholesterol),
    ("Systolic blood pressure", SYSTOLIC_BP, BP_LIMIT, _pressure),
    ("Smoking status", SMOKING, SMOKING_LIMIT, _smoking),
)


class AscvdRisk:
    definition = DEFINITION

    def __init__(self, codes: vs.Membership, clock: Callable[[], datetime]) -> None:
        self._codes = codes
        self._clock = clock

    def evaluate(self, call: HookCall) -> CdsResponse:
        now = self._clock()
        patient = call.prefetch.get("patient")
        years = age(patient, now)
        if years.usable and not pce.MIN_AGE <= years.value <= pce.MAX_AGE:
            return CdsResponse((_refused(years.value),))
        known = self._clinical_ascvd(call)
        if known is not None:
            return CdsResponse((_secondary_prevention(known),))
        observations = entries(call.prefetch.get("observations"), "Observation")
        required = [
            years,
            sex(patient),
            *(
                latest_observation(observations, label, LOINC, code, limit, now, read)
                for label, code, limit, read in LAB_INPUTS
            ),
        ]
        race, race_note = _race(patient)
        diabetes = self._diabetes(call)
        treated, statin = self._medications(call)
        context = [race_note, diabetes.line(), treated.line()]
        if not all(f.usable for f in required):
            return CdsResponse((_incomplete(required, context),))
        age_f, sex_f, tc, hdl, sbp, smoker = required
        factors = pce.RiskFactors(
            age=age_f.value,
            sex=sex_f.value,
            race=race,
            total_cholesterol=tc.value,
            hdl=hdl.value,
            systolic_bp=sbp.value,
            treated_bp=treated.value,
            smoker=smoker.value,
            diabetes=diabetes.value,
        )
        risk = pce.ten_year_risk(factors)
        patient_id = call.context.get("patientId")
        lines = [f.line() for f in required] + context
        return CdsResponse((_risk_card(risk, lines, statin, patient_id),))

    def _clinical_ascvd(self, call: HookCall) -> str | None:
        """The name of an applying clinical ASCVD Condition, if the patient has one."""
        for condition in entries(call.prefetch.get("conditions"), "Condition"):
            code = condition.get("code")
            if condition_recorded(condition) and self._codes.concept_in(code, vs.CLINICAL_ASCVD):
                return concept_name(code)
        return None

    def _diabetes(self, call: HookCall) -> Finding:
        for condition in entries(call.prefetch.get("conditions"), "Condition"):
            if condition_applies(condition) and self._codes.concept_in(
                condition.get("code"), vs.DIABETES
            ):
                return Finding(
                    "Diabetes", True, "yes (" + concept_name(condition.get("code")) + ")"
                )
        return Finding("Diabetes", False, "no (no active diabetes condition on record)")

    def _medications(self, call: HookCall) -> tuple[Finding, Finding]:
        treated = Finding(
            "Blood pressure treatment", False, "no antihypertensive on the medication list"
        )
        statin = Finding("Statin", False, "none on the medication list")
        for request in entries(call.prefetch.get("medications"), "MedicationRequest"):
            if request.get("status") != "active":
                continue
            drug = request.get("medicationCodeableConcept")
            if not treated.value and self._codes.concept_in(drug, vs.ANTIHYPERTENSIVES):
                treated = Finding(
                    "Blood pressure treatment", True, "yes (" + concept_name(drug) + ")"
                )
            if not statin.value and self._codes.concept_in(drug, vs.STATINS):
                statin = Finding("Statin", True, concept_name(drug))
        return treated, statin


def _race(patient: JSON | None) -> tuple[pce.Race, str]:
    codes = omb_race_codes(patient)
    if OMB_BLACK in codes:
        return "african-american", "- Race: Black or African American (African-American equations)"
    if codes == {"2106-3"}:
        return "white", "- Race: White (white equations)"
    return "white", (
        "- Race: not White or Black/African American, or not recorded: the white equations are "
        "used, as the guideline advises; they may over- or underestimate the risk"
    )


def _refused(years: int) -> Card:
    return Card(
        summary="10-year ASCVD risk not estimated: the Pooled Cohort Equations apply to ages 40-79",
        indicator="info",
        source_label=SOURCE,
        source_url=SOURCE_URL,
        detail=(
            f"The patient is {years}. The Pooled Cohort Equations were derived and validated for "
            "adults aged 40 to 79 without ASCVD, so no 10-year risk is given outside that range."
        ),
    )


def _secondary_prevention(condition: str) -> Card:
    return Card(
        summary="10-year ASCVD risk not estimated: the patient has clinical ASCVD",
        indicator="info",
        source_label=SOURCE,
        source_url=SOURCE_URL,
        detail=(
            f"On record: {condition}. The Pooled Cohort Equations estimate the risk of a first "
            "ASCVD event in adults without clinical ASCVD; with it, secondary prevention "
            "guidance applies instead."
        ),
    )


def _incomplete(required: list[Finding], context: list[str]) -> Card:
    gaps = [f.label for f in required if not f.usable]
    lines = [f.line() for f in required]
    return Card(
        summary=summary_list(gaps, "10-year ASCVD risk not estimated: missing or outdated "),
        indicator="info",
        source_label=SOURCE,
        source_url=SOURCE_URL,
        detail="No risk is given until every input is on record and recent enough.\n\n"
        + "\n".join(lines + context),
    )


def band(risk: float) -> str:
    if risk < 5:
        return "low"
    if risk < 7.5:
        return "borderline"
    if risk < 20:
        return "intermediate"
    return "high"


def _risk_card(risk: float, lines: list[str], statin: Finding, patient_id: object) -> Card:
    """The risk and its band; from 7.5 % with no statin listed, the draft statin order."""
    level = band(risk)
    detail = [f"Estimated 10-year risk of a first hard ASCVD event: {risk:.1f} % ({level}).", ""]
    detail += [*lines, statin.line()]
    offer = None
    if risk >= 7.5 and not statin.value and isinstance(patient_id, str):
        offer = statin_suggestion(patient_id)
        detail += [
            "",
            "At 7.5 % or more, a moderate-intensity statin is recommended after a risk discussion.",
        ]
    return Card(
        summary=f"10-year ASCVD risk {risk:.1f} % ({level})",
        indicator="warning" if risk >= 7.5 else "info",
        source_label=SOURCE,
        source_url=SOURCE_URL,
        detail="\n".join(detail),
        suggestions=(offer.suggestion,) if offer else (),
        selection_behavior="at-most-one" if offer else None,
        override_reasons=offer.override_reasons if offer else (),
    )
