"""RXA -> Immunization: segments/ "RXA[Immunization]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, own_id
from adapters.hl7v2.convert.datatypes import practitioner_ref
from adapters.hl7v2.convert.segments.orc import order_identifiers, ordering_provider
from adapters.hl7v2.message import MessageError, Segment

_V2_0443 = "http://terminology.hl7.org/CodeSystem/v2-0443"


def map_immunization(ctx: Context, orc: Segment | None, rxa: Segment) -> str:
    """RXA -> Immunization: segments/ "RXA[Immunization]" (RXA-3 occurrence, RXA-5 vaccineCode,
    RXA-6/7 doseQuantity, ORC-12 ("ORC[Immunization]", function OP) and RXA-10 (AP)
    performers, RXA-15 lotNumber, RXA-16 expirationDate, RXA-17 manufacturer,
    RXA-20 status via CompletionStatus, RXA-21 D: entered-in-error);
    ORC-2/3 identifiers per "ORC[Immunization]"."""
    ctx.at(rxa)
    vaccine = dt.codeable(rxa.components(5))
    if vaccine is None:
        raise MessageError(
            "RXA-5 (administered code) is required", error_code="101", location=rxa.location(5)
        )
    when = ctx.time(rxa.text(3))
    if when is None:
        raise MessageError(
            "RXA-3 (start of administration) is required",
            error_code="101",
            location=rxa.location(3),
        )
    status = tables.lookup("CompletionStatus", rxa.text(20))
    imm: dict[str, Any] = {
        "resourceType": "Immunization",
        "status": "entered-in-error"
        if rxa.text(21) == "D"
        else (status[0] if status else "completed"),
        "vaccineCode": vaccine,
        "patient": {"reference": ctx.patient},
        "occurrenceDateTime": when,
    }
    notes = rxa.text(9)  # NIP001: 00 new record (administered here), 01-08 historical
    if notes:
        imm["primarySource"] = notes == "00"
        origin = dt.codeable(rxa.components(9))
        if notes != "00" and origin:
            imm["reportOrigin"] = origin
    amount = rxa.text(6)
    if amount and amount != "999":
        dose = dt.quantity(amount, rxa.components(7))
        if dose:
            imm["doseQuantity"] = dose
    performers = [
        {"function": {"coding": [{"system": _V2_0443, "code": function}]}, "actor": actor}
        for function, actor in (
            ("OP", ordering_provider(ctx, orc)),  # ORC[Immunization] ORC-12
            ("AP", practitioner_ref(ctx, rxa.components(10))),
        )
        if actor
    ]
    if performers:
        imm["performer"] = performers
    if rxa.text(15):
        imm["lotNumber"] = rxa.text(15)
    expires = dt.date(rxa.text(16))
    if expires:
        imm["expirationDate"] = expires
    maker = dt.codeable(rxa.components(17))
    if maker:
        first = (maker.get("coding") or [{}])[0]
        imm["manufacturer"] = dt.clean(
            {
                "display": first.get("display") or maker.get("text"),
                "identifier": dt.clean({"system": first.get("system"), "value": first.get("code")}),
            }
        )
    idents = order_identifiers(ctx, orc, None)
    if idents:
        imm["identifier"] = idents
        criteria = identifier_criteria(idents[0])
    else:
        first = (vaccine.get("coding") or [{}])[0]
        ident = own_id(ctx, "immunization", f"{ctx.patient_key}|{first.get('code')}|{when}")
        imm["identifier"] = [ident]
        criteria = identifier_criteria(ident)
    ref = ctx.entries.upsert(imm, criteria)
    ctx.focus.append(ref)
    return ref
