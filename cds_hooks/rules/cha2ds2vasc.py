"""`patient-view` CHA2DS2-VASc: stroke risk in atrial fibrillation.

Lip GY et al., Chest 2010;137:263-272: congestive heart failure 1, hypertension 1, age >= 75
2, diabetes 1, prior stroke/TIA/thromboembolism 2, vascular disease 1, age 65-74 1, female
sex 1 (0-9). Conditions come from the patient's record by value set (C, H and D while they
apply; S2 and V, past events, whatever their clinical status unless refuted or entered in
error; none on record counts as absent); age and sex from the Patient. The service answers
only for a patient with an applying atrial fibrillation Condition; others get no card.

Bands and guideline text: 2019 AHA/ACC/HRS focused update of the 2014 AF guideline
(https://doi.org/10.1161/CIR.0000000000000665) section 4.1: anticoagulation recommended from
2 in men and 3 in women, may be considered at 1 in men and 2 in women, reasonably omitted at 0
in men and 1 in women.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cds_hooks.rules import valuesets as vs
from cds_hooks.rules.fhirdata import (
    JSON,
    concept_name,
    condition_applies,
    condition_recorded,
    entries,
)
from cds_hooks.rules.findings import Finding, summary_list
from cds_hooks.rules.patient import age, sex
from cds_hooks.service import Card, CdsResponse, HookCall, ServiceDefinition

SOURCE = "2019 AHA/ACC/HRS atrial fibrillation guideline"
SOURCE_URL = "https://doi.org/10.1161/CIR.0000000000000665"

# Adjusted stroke rate (%/year) by score: Lip et al. 2010, as tabulated in the 2010 ESC AF
# guideline (Table 8).
ANNUAL_STROKE_RATE = (0.0, 1.3, 2.2, 3.2, 4.0, 6.7, 9.8, 9.6, 6.7, 15.2)

# (value set, label, points, whether a past event counts) of the conditions the score counts:
# C, H and D while they apply; S2 and V ("prior" stroke, MI...) whatever their clinical status.
CONDITION_ITEMS = (
    (vs.HEART_FAILURE, "Congestive heart failure (C)", 1, False),
    (vs.HYPERTENSION, "Hypertension (H)", 1, False),
    (vs.DIABETES, "Diabetes (D)", 1, False),
    (vs.STROKE_TIA_THROMBOEMBOLISM, "Stroke, TIA or thromboembolism (S2)", 2, True),
    (vs.VASCULAR_DISEASE, "Vascular disease (V)", 1, True),
)

GUIDANCE = {
    "low": "Omitting anticoagulant therapy is reasonable (score 0 in men, 1 in women).",
    "moderate": (
        "Oral anticoagulation may be considered to reduce thromboembolic stroke risk "
        "(score 1 in men, 2 in women)."
    ),
    "high": "Oral anticoagulants are recommended (score 2 or more in men, 3 or more in women).",
}

DEFINITION = ServiceDefinition(
    id="cha2ds2-vasc",
    hook="patient-view",
    title="CHA2DS2-VASc stroke risk in atrial fibrillation",
    description=(
        "For a patient with atrial fibrillation, the CHA2DS2-VASc score from the record's "
        "conditions, age and sex, with the annual stroke risk band and guideline advice."
    ),
    prefetch={
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}",
    },
)


@dataclass(frozen=True, slots=True)
class Score:
    points: int
    items: tuple[Finding, ...]
    band: str


def score(age_years: int, sex_value: str, present: dict[str, bool]) -> int:
    """CHA2DS2-VASc from age, sex and the condition items present (value set url -> bool)."""
    points = sum(p for url, _, p, _ in CONDITION_ITEMS if present.get(url))
    points += 2 if age_years >= 75 else 1 if age_years >= 65 else 0
    return points + (1 if sex_value == "female" else 0)


def band(points: int, sex_value: str) -> str:
    threshold = points - (1 if sex_value == "female" else 0)  # sex alone adds no risk
    if threshold <= 0:
        return "low"
    return "moderate" if threshold == 1 else "high"


class Cha2ds2Vasc:
    definition = DEFINITION

    def __init__(self, codes: vs.Membership, clock: Callable[[], datetime]) -> None:
        self._codes = codes
        self._clock = clock

    def evaluate(self, call: HookCall) -> CdsResponse:
        recorded = [
            c
            for c in entries(call.prefetch.get("conditions"), "Condition")
            if condition_recorded(c)
        ]
        applying = [c for c in recorded if condition_applies(c)]
        if not self._matching(applying, vs.ATRIAL_FIBRILLATION):
            return CdsResponse()
        patient = call.prefetch.get("patient")
        years, sex_f = age(patient, self._clock()), sex(patient)
        items = [
            self._item(recorded if history else applying, url, label)
            for url, label, _, history in CONDITION_ITEMS
        ]
        if not (years.usable and sex_f.usable):
            return CdsResponse((_incomplete([years, sex_f], items),))
        present = {
            url: bool(item.value)
            for (url, _, _, _), item in zip(CONDITION_ITEMS, items, strict=True)
        }
        points = score(years.value, sex_f.value, present)
        return CdsResponse((_card(points, sex_f.value, [years, sex_f, *items]),))

    def _matching(self, conditions: list[JSON], url: str) -> JSON | None:
        return next((c for c in conditions if self._codes.concept_in(c.get("code"), url)), None)

    def _item(self, conditions: list[JSON], url: str, label: str) -> Finding:
        found = self._matching(conditions, url)
        if found is None:
            return Finding(label, False, "no (none on record)")
        return Finding(label, True, "yes (" + concept_name(found.get("code")) + ")")


def _incomplete(needed: list[Finding], items: list[Finding]) -> Card:
    gaps = [f.label for f in needed if not f.usable]
    return Card(
        summary=summary_list(gaps, "CHA2DS2-VASc not calculated: missing "),
        indicator="info",
        source_label=SOURCE,
        source_url=SOURCE_URL,
        detail="The patient has atrial fibrillation; the score needs age and sex.\n\n"
        + "\n".join(f.line() for f in needed + items),
    )


def _card(points: int, sex_value: str, used: list[Finding]) -> Card:
    level = band(points, sex_value)
    rate = ANNUAL_STROKE_RATE[points]
    lines = [
        f"CHA2DS2-VASc {points}: {level} stroke risk, adjusted stroke rate about {rate:.1f} % "
        "per year without anticoagulation (Lip et al. 2010).",
        "",
        GUIDANCE[level],
        "",
        *(f.line() for f in used),
    ]
    return Card(
        summary=f"CHA2DS2-VASc {points}: {level} stroke risk (about {rate:.1f} %/year)",
        indicator="warning" if level == "high" else "info",
        source_label=SOURCE,
        source_url=SOURCE_URL,
        detail="\n".join(lines),
    )
