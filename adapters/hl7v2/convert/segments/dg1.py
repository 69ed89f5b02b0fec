"""DG1 -> Condition: segments/ "DG1[Condition]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, own_id, with_identifier
from adapters.hl7v2.message import MessageError, Segment


def map_condition(ctx: Context, dg1: Segment) -> None:
    """DG1 -> Condition: segments/ "DG1[Condition]" (DG1-3 code, DG1-5 onset, DG1-6 type)."""
    ctx.at(dg1)
    code = dt.codeable(dg1.components(3))
    if code is None:
        text = dg1.text(4)
        if not text:
            raise MessageError(
                "DG1-3 (diagnosis code) is required", error_code="101", location=dg1.location(3)
            )
        code = {"text": text}
    cond: dict[str, Any] = {
        "resourceType": "Condition",
        "subject": {"reference": ctx.patient},
        "code": code,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "encounter-diagnosis",
                    }
                ]
            }
        ],
    }
    if ctx.encounter:
        cond["encounter"] = {"reference": ctx.encounter}
    onset = ctx.time(dg1.text(5))
    if onset:
        cond["onsetDateTime"] = onset
    recorded = ctx.time(dg1.text(19))
    if recorded:
        cond["recordedDate"] = recorded
    first = (code.get("coding") or [{}])[0]
    key = f"{ctx.patient_key}|{ctx.encounter}|DG1|{first.get('system')}|{first.get('code')}"
    ident = own_id(ctx, "diagnosis", key)
    ctx.focus.append(ctx.entries.upsert(with_identifier(cond, ident), identifier_criteria(ident)))
