"""ORC with RXO/RXE -> MedicationRequest, RXD -> MedicationDispense: segments/
"RXE[MedicationRequest]", "RXO[MedicationRequest]", "RXD[MedicationDispense]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, own_id, with_identifier
from adapters.hl7v2.convert.datatypes import practitioner_ref
from adapters.hl7v2.convert.segments.orc import order_identifiers
from adapters.hl7v2.message import MessageError, Segment

_STATUS = {"revoked": "cancelled", "draft": "draft", "on-hold": "on-hold", "completed": "completed"}


def map_medication_request(ctx: Context, orc: Segment | None, rx: Segment) -> str:
    """RXE (RXE-2 give code, RXE-3 dose) or RXO (RXO-1 requested give code) with its ORC
    (ORC-2/3 identifiers, ORC-1/5 status, ORC-9 authoredOn, ORC-12 requester)."""
    ctx.at(rx)
    field = 2 if rx.name == "RXE" else 1
    medication = dt.codeable(rx.components(field))
    if medication is None:
        raise MessageError(
            f"{rx.name}-{field} (give code) is required",
            error_code="101",
            location=rx.location(field),
        )
    status = None
    if orc is not None:
        status = tables.lookup("OrderStatus", orc.text(5)) or tables.lookup(
            "OrderControlCode[ServiceRequest.status]", orc.text(1)
        )
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": _STATUS.get(status[0], "active") if status else "active",
        "intent": "order",
        "medicationCodeableConcept": medication,
        "subject": {"reference": ctx.patient},
    }
    if ctx.encounter:
        request["encounter"] = {"reference": ctx.encounter}
    if orc is not None:
        authored = ctx.time(orc.text(9))
        if authored:
            request["authoredOn"] = authored
        requester = practitioner_ref(ctx, orc.components(12))
        if requester:
            request["requester"] = requester
    idents = order_identifiers(ctx, orc, None)
    if not idents:
        first = (medication.get("coding") or [{}])[0]
        idents = [own_id(ctx, "medication-order", f"{ctx.patient_key}|{first.get('code')}")]
    request["identifier"] = idents
    ref = ctx.entries.upsert(request, identifier_criteria(idents[0]))
    ctx.focus.append(ref)
    return ref


def map_dispense(ctx: Context, rxd: Segment, prescription: str | None) -> str:
    """RXD -> MedicationDispense (RXD-2 dispense/give code, RXD-3 whenHandedOver, RXD-4
    quantity, RXD-7 prescription number, RXD-10 performer)."""
    ctx.at(rxd)
    medication = dt.codeable(rxd.components(2))
    if medication is None:
        raise MessageError(
            "RXD-2 (dispense/give code) is required", error_code="101", location=rxd.location(2)
        )
    dispense: dict[str, Any] = {
        "resourceType": "MedicationDispense",
        "status": "completed",
        "medicationCodeableConcept": medication,
        "subject": {"reference": ctx.patient},
    }
    handed = ctx.time(rxd.text(3))
    if handed:
        dispense["whenHandedOver"] = handed
    amount = dt.quantity(rxd.text(4), rxd.components(5))
    if amount:
        dispense["quantity"] = amount
    if prescription:
        dispense["authorizingPrescription"] = [{"reference": prescription}]
    who = practitioner_ref(ctx, rxd.components(10))
    if who:
        dispense["performer"] = [{"actor": who}]
    first = (medication.get("coding") or [{}])[0]
    key = f"{ctx.patient_key}|{rxd.text(7)}|{first.get('code')}|{rxd.text(3)}|{rxd.text(1)}"
    ident = own_id(ctx, "dispense", key)
    ref = ctx.entries.upsert(with_identifier(dispense, ident), identifier_criteria(ident))
    ctx.focus.append(ref)
    return ref
