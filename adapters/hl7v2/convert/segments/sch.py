"""SCH (with AIP, AIL, TQ1) -> Appointment: segments/ "SCH[Appointment]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.datatypes import location_ref, practitioner_ref
from adapters.hl7v2.message import MessageError, Segment


def map_appointment(ctx: Context, sch: Segment, event: str) -> str:
    """SCH -> Appointment: segments/ "SCH[Appointment]" (SCH-1/2 identifiers, SCH-7 reason,
    SCH-8 appointmentType, SCH-11 or TQ1-7/8 start/end, SCH-25 status via
    FillerStatusCodes[Appointment]); participants from "AIP[Appointment]",
    "AIL[Appointment]" and "PID[Appointment]"."""
    ctx.at(sch)
    idents = []
    for n, kind in ((1, "PLAC"), (2, "FILL")):
        comps = sch.components(n)
        if dt.part(comps, 1):
            idents.append(
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": kind,
                            }
                        ]
                    },
                    "system": dt.authority_system(
                        dt.part(comps, 2), dt.part(comps, 3), dt.part(comps, 4), ctx.systems
                    )
                    or ctx.own_system("appointment"),
                    "value": dt.part(comps, 1),
                }
            )
    if not idents:
        raise MessageError(
            "SCH-1 or SCH-2 (appointment id) is required",
            error_code="101",
            location=sch.location(2),
        )
    status = tables.lookup("FillerStatusCodes[Appointment]", sch.text(25))
    default = {"S15": "cancelled", "S26": "noshow"}.get(event, "booked")
    appt: dict[str, Any] = {
        "resourceType": "Appointment",
        "identifier": idents,
        "status": status[0] if status else default,
    }
    reason = dt.codeable(sch.components(7), V2_0276)
    if reason and dt.part(sch.components(7), 3).upper() == "HL70277":
        appt["appointmentType"] = reason  # SCH-7 coded from table 0277 is a type, per the IG
    elif reason:
        appt["reasonCode"] = [reason]
    appointment_type = dt.codeable(sch.components(8), V2_0277)
    if appointment_type:
        appt["appointmentType"] = appointment_type
    tq1 = ctx.message.first("TQ1")
    timing = sch.components(11)
    start = ctx.time(tq1.text(7) if tq1 is not None else dt.part(timing, 4))
    end = ctx.time(tq1.text(8) if tq1 is not None else dt.part(timing, 5))
    if start and "T" in start:
        appt["start"] = start
    if end and "T" in end:
        appt["end"] = end
    minutes = duration_minutes(sch.text(9), sch.text(10))
    if minutes:
        appt["minutesDuration"] = minutes
    participants = []
    if ctx.patient:
        participants.append({"actor": {"reference": ctx.patient}, "status": "accepted"})
    for seg in ctx.message.segments:
        if seg.name == "AIP":
            who = practitioner_ref(ctx, seg.components(3))
            if who:
                participants.append({"actor": who, "status": "accepted"})
        elif seg.name == "AIL":
            where = location_ref(ctx, seg.components(3))  # AIL-3 as Locations (PL[Location])
            if where:
                participants.append({"actor": where, "status": "accepted"})
    if not participants:
        raise MessageError(
            "An appointment needs a patient, AIP or AIL participant",
            error_code="100",
            location="PID",
        )
    appt["participant"] = participants
    ref = ctx.entries.upsert(appt, identifier_criteria(idents[-1]))
    ctx.focus.append(ref)
    return ref


V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
V2_0277 = "http://terminology.hl7.org/CodeSystem/v2-0277"
_MINUTES_PER = {"S": 1 / 60, "SEC": 1 / 60, "MIN": 1, "H": 60, "HR": 60, "D": 1440, "WK": 10080}
"""SCH-10 duration units (ISO+ and UCUM codes, case-insensitive) in minutes."""


def duration_minutes(amount: str, units: str) -> int | None:
    """SCH-9 in the SCH-10 units (minutes when SCH-10 is empty) as whole minutes; None
    when the units are unknown or the duration is not a whole positive number of minutes."""
    value = dt.number(amount)
    factor = _MINUTES_PER.get(units.strip().upper() or "MIN")
    if value is None or factor is None:
        return None
    minutes = value * factor
    return int(minutes) if minutes >= 1 and float(minutes).is_integer() else None
