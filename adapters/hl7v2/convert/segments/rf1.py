"""RF1 -> ServiceRequest: segments/ "RF1[ServiceRequest]" (a referral, REF_I12)."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.message import MessageError, Segment

REFERRAL = {
    "coding": [
        {"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}
    ]
}


def map_referral(ctx: Context, rf1: Segment) -> str:
    """RF1 -> ServiceRequest (RF1-6 originating referral identifier, RF1-1 status, RF1-2
    priority, RF1-3 type as code, RF1-10 reason, RF1-7 authoredOn; category referral)."""
    ctx.at(rf1)
    given = rf1.components(6)
    if not dt.part(given, 1):
        raise MessageError(
            "RF1-6 (originating referral identifier) is required",
            error_code="101",
            location=rf1.location(6),
        )
    ident = {
        "system": dt.authority_system(
            dt.part(given, 2), dt.part(given, 3), dt.part(given, 4), ctx.systems
        )
        or ctx.own_system("referral"),
        "value": dt.part(given, 1),
    }
    status = {"A": "active", "P": "draft", "R": "revoked", "E": "completed"}.get(
        rf1.text(1), "active"
    )
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": [ident],
        "status": status,
        "intent": "order",
        "category": [REFERRAL],
        "subject": {"reference": ctx.patient},
    }
    kind = dt.codeable(rf1.components(3), "http://terminology.hl7.org/CodeSystem/v2-0281")
    if kind:
        request["code"] = kind
    reasons = [
        r for r in (dt.codeable(rf1.components(10, n)) for n in range(len(rf1.reps(10)))) if r
    ]
    if reasons:
        request["reasonCode"] = reasons
    authored = ctx.time(rf1.text(7))
    if authored:
        request["authoredOn"] = authored
    if ctx.encounter:
        request["encounter"] = {"reference": ctx.encounter}
    ref = ctx.entries.upsert(request, identifier_criteria(ident))
    ctx.focus.append(ref)
    return ref
