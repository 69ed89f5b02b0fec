"""PV1 and PV2 -> Encounter: segments/ "PV1[Encounter]", "PV2[Encounter]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import identifier_criteria, stable_id
from adapters.hl7v2.convert.context import PARTICIPATION, Context, rep_components
from adapters.hl7v2.convert.datatypes import location_ref, practitioner_ref
from adapters.hl7v2.message import Segment


def map_encounter(ctx: Context, pv1: Segment, event: str) -> str:
    """PV1 -> Encounter: segments/ "PV1[Encounter]" (PV1-2 class via PatientClass[EncounterClass],
    PV1-3 location, PV1-7/8/17 participants, PV1-19 identifier, PV1-44/45 period); status
    from the event (codesystems/ "Event[EncounterStatus]"), A04 as in-progress."""
    ctx.at(pv1)
    patient_class = pv1.text(2)
    found = tables.coding("PatientClass[EncounterClass]", patient_class)
    klass = found or {
        "system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
        "code": "UNK",
    }
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": encounter_status(pv1, event, patient_class),
        "class": klass,
    }
    ident = ctx.identifier(pv1.components(19), pv1.location(19))
    if ident:
        enc["identifier"] = [ident]
    if ctx.patient:
        enc["subject"] = {"reference": ctx.patient}
    start, end = ctx.time(pv1.text(44)), ctx.time(pv1.text(45))
    if start or end:
        enc["period"] = dt.clean({"start": start, "end": end})
    where = location_ref(ctx, pv1.components(3))
    if where:
        enc["location"] = [{"location": where, "status": "active"}]
    participants = []
    for n, role in ((7, "ATND"), (8, "REF"), (9, "CON"), (17, "ADM")):
        for rep in pv1.reps(n):
            who = practitioner_ref(ctx, rep_components(rep, pv1))
            if who:
                participants.append(
                    {
                        "type": [{"coding": [{"system": PARTICIPATION, "code": role}]}],
                        "individual": who,
                    }
                )
    _hospitalization(ctx, pv1, enc)
    episode = _episode(ctx, pv1)
    if episode:
        enc["episodeOfCare"] = [{"reference": episode}]
    pv2 = ctx.message.first("PV2")
    if pv2 is not None:
        map_visit_details(ctx, pv2, enc, participants)
    if participants:
        enc["participant"] = participants
    if ident:
        ref = ctx.entries.upsert(enc, identifier_criteria(ident))
    else:
        ref = ctx.entries.put(enc, stable_id("Encounter", ctx.sender, ctx.header.control_id))
    ctx.focus.append(ref)
    return ref


def map_visit_details(
    ctx: Context, pv2: Segment, enc: dict[str, Any], participants: list[dict[str, Any]]
) -> None:
    """PV2 -> Encounter: segments/ "PV2[Encounter]" (PV2-3 reasonCode, PV2-11 length in
    days, PV2-13 referral source as a participant, PV2-25 priority)."""
    reason = dt.codeable(pv2.components(3))
    if reason:
        enc["reasonCode"] = [reason]
    days = dt.number(pv2.text(11))
    if days is not None:
        enc["length"] = {"value": days, "unit": "days", "system": dt.UCUM, "code": "d"}
    for rep in pv2.reps(13):
        who = practitioner_ref(ctx, rep_components(rep, pv2))
        if who:
            participants.append(
                {
                    "type": [{"coding": [{"system": PARTICIPATION, "code": "REF"}]}],
                    "individual": who,
                }
            )
    priority = dt.codeable(pv2.components(25), "http://terminology.hl7.org/CodeSystem/v2-0217")
    if priority:
        enc["priority"] = priority


def encounter_status(pv1: Segment, event: str, patient_class: str) -> str:
    if event in ("A01", "A04", "A02", "A13"):
        return "in-progress"
    mapped = tables.lookup("Event[EncounterStatus]", event)
    if mapped and mapped[0] != "unknown":
        return mapped[0]
    if pv1.text(45):
        return "finished"
    by_class = tables.lookup("PatientClass[EncounterStatus]", patient_class)
    return by_class[0] if by_class else "unknown"


def _hospitalization(ctx: Context, pv1: Segment, enc: dict[str, Any]) -> None:
    """PV1-4 admission type (Encounter.type), PV1-10 hospital service (serviceType), and
    Encounter.hospitalization: PV1-13 re-admission, PV1-14 admit source, PV1-16 VIP,
    PV1-36 discharge disposition, PV1-37 discharged-to location."""
    admission = dt.codeable(pv1.components(4), "http://terminology.hl7.org/CodeSystem/v2-0007")
    if admission:
        enc["type"] = [admission]
    service = dt.codeable(pv1.components(10), "http://terminology.hl7.org/CodeSystem/v2-0069")
    if service:
        enc["serviceType"] = service
    stay: dict[str, Any] = {}
    source = dt.codeable(pv1.components(14), "http://terminology.hl7.org/CodeSystem/v2-0023")
    if source:
        stay["admitSource"] = source
    if pv1.text(13):
        stay["reAdmission"] = dt.codeable(
            pv1.components(13), "http://terminology.hl7.org/CodeSystem/v2-0092"
        )
    vip = dt.codeable(pv1.components(16), "http://terminology.hl7.org/CodeSystem/v2-0099")
    if vip:
        stay["specialCourtesy"] = [vip]
    disposition = dt.codeable(pv1.components(36), "http://terminology.hl7.org/CodeSystem/v2-0112")
    if disposition:
        stay["dischargeDisposition"] = disposition
    destination = dt.part(pv1.components(37), 1)
    if destination:
        stay["destination"] = {"display": destination}
    if stay:
        enc["hospitalization"] = stay


def _episode(ctx: Context, pv1: Segment) -> str | None:
    """PV1-54 service episode identifier (and PV1-53 its description) -> EpisodeOfCare."""
    ident = ctx.identifier(pv1.components(54), pv1.location(54)) if pv1.field(54) else None
    if ident is None or not ctx.patient:
        return None
    episode: dict[str, Any] = {
        "resourceType": "EpisodeOfCare",
        "identifier": [ident],
        "status": "active",
        "patient": {"reference": ctx.patient},
    }
    if pv1.text(53):
        episode["extension"] = [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/resource-instance-description",
                "valueString": pv1.text(53),
            }
        ]
    return ctx.entries.upsert(episode, identifier_criteria(ident))
