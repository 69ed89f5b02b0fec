"""AL1 and IAM -> AllergyIntolerance: segments/ "AL1[AllergyIntolerance]",
"IAM[AllergyIntolerance]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, own_id, with_identifier
from adapters.hl7v2.message import MessageError, Segment


def map_allergy(ctx: Context, al1: Segment) -> None:
    """AL1 -> AllergyIntolerance: segments/ "AL1[AllergyIntolerance]" (AL1-2 category via
    AllergenType, AL1-3 code, AL1-4 criticality via AllergySeverity, AL1-5 reaction, AL1-6
    onset); an IAM (ADT A60) the same way: "IAM[AllergyIntolerance]" has the same fields
    1 to 5, IAM-11 the onset and IAM-13 the recorded date. The same allergen of one patient
    is one AllergyIntolerance, whichever segment names it."""
    ctx.at(al1)
    code = dt.codeable(al1.components(3))
    if code is None:
        raise MessageError(
            f"{al1.name}-3 (allergen) is required", error_code="101", location=al1.location(3)
        )
    if ctx.patient is None:
        raise MessageError(
            f"An allergy ({al1.name}) needs the patient (PID) it is about",
            error_code="100",
            location="PID",
        )
    allergy: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": ctx.patient},
        "code": code,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
    }
    category = tables.lookup("AllergenType[AllergyIntoleranceCategory]", al1.text(2))
    if category:
        allergy["category"] = [category[0]]
    crit = tables.lookup("AllergySeverity[AllergyIntolerance.criticality]", al1.text(4))
    if crit:
        allergy["criticality"] = crit[0]
    reactions = [{"manifestation": [{"text": r}]} for r in al1.reps(5) if r]
    if reactions:
        allergy["reaction"] = reactions
    onset = dt.date(al1.text(11 if al1.name == "IAM" else 6))
    if onset:
        allergy["onsetDateTime"] = onset
    recorded = ctx.time(al1.text(13)) if al1.name == "IAM" else None
    if recorded:
        allergy["recordedDate"] = recorded
    key = f"{ctx.patient_key}|AL1|{code.get('coding', [{}])[0].get('code') or code.get('text')}"
    ident = own_id(ctx, "allergy", key)
    ctx.focus.append(
        ctx.entries.upsert(with_identifier(allergy, ident), identifier_criteria(ident))
    )
