"""FT1 -> ChargeItem: segments/ "FT1[ChargeItem]" (financial transactions, in DFT_P03 and
wherever an FT1 occurs)."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, own_id, with_identifier
from adapters.hl7v2.message import MessageError, Segment


def map_charge(ctx: Context, ft1: Segment) -> str:
    """FT1 -> ChargeItem (FT1-2 transaction id, FT1-4 occurrence, FT1-6 type, FT1-7 code,
    FT1-10 quantity; status billable, or entered-in-error for a credit/reversal CD)."""
    ctx.at(ft1)
    code = dt.codeable(ft1.components(7)) or dt.codeable(ft1.components(25))
    if code is None:
        raise MessageError(
            "FT1-7 (transaction code) is required", error_code="101", location=ft1.location(7)
        )
    if ctx.patient is None:
        raise MessageError(
            "A charge (FT1) needs the patient (PID) it is for", error_code="100", location="PID"
        )
    charge: dict[str, Any] = {
        "resourceType": "ChargeItem",
        "status": "billable",
        "code": code,
        "subject": {"reference": ctx.patient},
    }
    if ctx.encounter:
        charge["context"] = {"reference": ctx.encounter}
    when = ctx.time(ft1.text(4))
    if when:
        charge["occurrenceDateTime"] = when
    amount = dt.number(ft1.text(10))
    if amount is not None:
        charge["quantity"] = {"value": amount}
    transaction = ft1.text(2)
    first = (code.get("coding") or [{}])[0]
    key = transaction or f"{ctx.patient_key}|{first.get('code')}|{ft1.text(4)}|{ft1.text(1)}"
    ident = own_id(ctx, "charge", key)
    ref = ctx.entries.upsert(with_identifier(charge, ident), identifier_criteria(ident))
    ctx.focus.append(ref)
    return ref
