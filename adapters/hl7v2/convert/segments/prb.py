"""PRB -> Condition: segments/ "PRB[Condition]" (patient care problems, PPR_PC1)."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, own_id, with_identifier
from adapters.hl7v2.message import MessageError, Segment

CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def map_problem(ctx: Context, prb: Segment) -> str:
    """PRB -> Condition (PRB-3 code, PRB-4 problem instance identifier, PRB-1 DE as
    entered-in-error, PRB-7 recordedDate, PRB-16 onset; category problem-list-item)."""
    ctx.at(prb)
    code = dt.codeable(prb.components(3))
    if code is None:
        raise MessageError(
            "PRB-3 (problem id) is required", error_code="101", location=prb.location(3)
        )
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "subject": {"reference": ctx.patient},
        "code": code,
        "category": [{"coding": [{"system": CATEGORY, "code": "problem-list-item"}]}],
    }
    if prb.text(1) == "DE":
        condition["verificationStatus"] = {
            "coding": [{"system": VERIFICATION, "code": "entered-in-error"}]
        }
    recorded = ctx.time(prb.text(7))
    if recorded:
        condition["recordedDate"] = recorded
    onset = ctx.time(prb.text(16))
    if onset:
        condition["onsetDateTime"] = onset
    instance = prb.components(4)
    if dt.part(instance, 1):
        ident = {
            "system": dt.authority_system(
                dt.part(instance, 2), dt.part(instance, 3), dt.part(instance, 4), ctx.systems
            )
            or ctx.own_system("problem"),
            "value": dt.part(instance, 1),
        }
    else:
        first = (code.get("coding") or [{}])[0]
        ident = own_id(
            ctx, "problem", f"{ctx.patient_key}|{first.get('system')}|{first.get('code')}"
        )
    ref = ctx.entries.upsert(with_identifier(condition, ident), identifier_criteria(ident))
    ctx.focus.append(ref)
    return ref
