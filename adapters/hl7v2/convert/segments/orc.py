"""ORC/OBR -> ServiceRequest: segments/ "ORC[ServiceRequest]", "OBR[ServiceRequest]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import identifier_criteria, stable_id
from adapters.hl7v2.convert.context import Context, own_id
from adapters.hl7v2.convert.datatypes import (
    organization_ref,
    practitioner_ref,
    practitioner_role_ref,
)
from adapters.hl7v2.message import MessageError, Segment

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def order_identifiers(
    ctx: Context, orc: Segment | None, obr: Segment | None
) -> list[dict[str, Any]]:
    out = []
    for kind, n_orc, n_obr in (("PLAC", 2, 2), ("FILL", 3, 3)):
        comps = (obr.components(n_obr) if obr is not None else []) or (
            orc.components(n_orc) if orc is not None else []
        )
        value = dt.part(comps, 1)
        if not value:
            continue
        system = dt.authority_system(
            dt.part(comps, 2), dt.part(comps, 3), dt.part(comps, 4), ctx.systems
        ) or ctx.own_system("order")
        out.append(
            {
                "type": {"coding": [{"system": V2_0203, "code": kind}]},
                "system": system,
                "value": value,
            }
        )
    return out or _group_identifiers(ctx, orc, obr)


def _group_identifiers(
    ctx: Context, orc: Segment | None, obr: Segment | None
) -> list[dict[str, Any]]:
    """An order known only by its ORC-4 placer group number (EI): an identifier derived
    from the group and the order's code (a group holds several orders), then the group's
    own, with type PGN (it also goes to ServiceRequest.requisition)."""
    group = orc.components(4) if orc is not None else []
    value = dt.part(group, 1)
    if not value:
        return []
    system = dt.authority_system(
        dt.part(group, 2), dt.part(group, 3), dt.part(group, 4), ctx.systems
    ) or ctx.own_system("order-group")
    code = dt.part(obr.components(4), 1) if obr is not None else ""
    return [
        {"system": ctx.own_system("order"), "value": stable_id(system, value, code)},
        {
            "type": {"coding": [{"system": V2_0203, "code": "PGN"}]},
            "system": system,
            "value": value,
        },
    ]


def kind_of(ident: dict[str, Any]) -> str:
    """The v2-0203 type code of an order identifier (PLAC, FILL, PGN), "" if untyped."""
    codings = ident.get("type", {}).get("coding") or [{}]
    return str(codings[0].get("code", ""))


def map_service_request(ctx: Context, orc: Segment | None, obr: Segment | None) -> str:
    """ORC/OBR -> ServiceRequest: segments/ "ORC[ServiceRequest]", "OBR[ServiceRequest]"
    (ORC-2/OBR-2 placer and ORC-3/OBR-3 filler identifiers, ORC-1/ORC-5 status via
    OrderControlCode[ServiceRequest.status] / OrderStatus, OBR-4 code, ORC-12
    requester as a PractitionerRole (with ORC-21), else OBR-16 as a Practitioner)."""
    idents = order_identifiers(ctx, orc, obr)
    seg = obr or orc
    assert seg is not None
    ctx.at(seg)
    if not idents and obr is not None and ctx.patient_key:
        # an OBR that comes with a referral or charge carries no order number: the order
        # is known by the patient, the code and the time
        key = f"{ctx.patient_key}|{obr.text(4)}|{obr.text(7)}|{obr.occurrence}"
        idents = [own_id(ctx, "order", key)]
    if not idents:
        raise MessageError(
            "An order needs a placer or filler order number (or an ORC-4 placer group)",
            error_code="101",
            location=seg.location(2),
        )
    status = None
    if orc is not None:
        status = tables.lookup("OrderStatus", orc.text(5)) or tables.lookup(
            "OrderControlCode[ServiceRequest.status]", orc.text(1)
        )
    if status is None and obr is not None and obr.text(25):
        status = ("completed", "", "") if obr.text(25) in ("F", "C") else ("active", "", "")
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": idents,
        "status": status[0] if status else "unknown",
        "intent": "order",
    }
    code = dt.codeable(obr.components(4)) if obr is not None else None
    if code:
        request["code"] = code
    group = next((i for i in idents if kind_of(i) == "PGN"), None)
    if group:
        request["requisition"] = group
    if ctx.patient:
        request["subject"] = {"reference": ctx.patient}
    if ctx.encounter:
        request["encounter"] = {"reference": ctx.encounter}
    authored = ctx.time(orc.text(9)) if orc is not None else None
    if authored:
        request["authoredOn"] = authored
    requester = ordering_provider(ctx, orc)
    if requester is None and obr is not None and obr.field(16):
        requester = practitioner_ref(ctx, obr.components(16))
    if requester:
        request["requester"] = requester
    tq1 = _timing_of(ctx, orc or obr)
    if tq1 is not None:
        _timing(ctx, tq1, request)
    ref = ctx.entries.upsert(request, identifier_criteria(idents[0]))
    ctx.focus.append(ref)
    return ref


def ordering_provider(ctx: Context, orc: Segment | None) -> dict[str, Any] | None:
    """ORC-12 ordering provider -> PractitionerRole: segments/ "ORC[ServiceRequest]"
    (requester: PractitionerRole.practitioner from ORC-12, .organization from ORC-21 the
    ordering facility); "ORC[Immunization]" maps ORC-12 the same way (performer.actor)."""
    if orc is None or not orc.field(12):
        return None
    facility = organization_ref(ctx, orc.components(21)) if orc.field(21) else None
    return practitioner_role_ref(ctx, orc.components(12), organization=facility)


_PRIORITY = {"S": "stat", "A": "asap", "R": "routine", "P": "routine", "T": "urgent"}
"""TQ1-9 priority (HL7 table 0485) -> request-priority."""


def _timing_of(ctx: Context, first: Segment | None) -> Segment | None:
    """The TQ1 of the order that `first` (its ORC, else its OBR) starts."""
    segments = ctx.message.segments
    if first is None:
        return None
    start = next(i for i, s in enumerate(segments) if s is first)
    for seg in segments[start + 1 :]:
        if seg.name == "TQ1":
            return seg
        if seg.name == "OBR" and first.name == "ORC":
            continue  # ORC TQ1 OBR or ORC OBR TQ1: that OBR is this order's
        if seg.name in ("ORC", "OBR", "OBX", "SPM"):
            return None
    return None


def _timing(ctx: Context, tq1: Segment, request: dict[str, Any]) -> None:
    """TQ1 -> ServiceRequest: segments/ "TQ1[ServiceRequest]" (TQ1-7/8 bounds of the
    occurrence, TQ1-9 priority, TQ1-11 text instruction as a note)."""
    bounds = dt.clean({"start": ctx.time(tq1.text(7)), "end": ctx.time(tq1.text(8))})
    if bounds:
        request["occurrenceTiming"] = {"repeat": {"boundsPeriod": bounds}}
    priority = _PRIORITY.get(tq1.text(9).upper())
    if priority:
        request["priority"] = priority
    if tq1.text(11):
        request.setdefault("note", []).append({"text": tq1.text(11)})
