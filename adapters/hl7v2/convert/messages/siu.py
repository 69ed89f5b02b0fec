"""SIU_S12 and its sibling events: messages/ "SIU_S12"."""

from __future__ import annotations

from adapters.hl7v2.convert.context import Context, required_segment
from adapters.hl7v2.convert.segments.pid import map_patient
from adapters.hl7v2.convert.segments.sch import map_appointment


def schedule(ctx: Context, event: str) -> None:
    """SIU_S12: messages/ "SIU_S12" (SCH[Appointment], PID, AIS, AIP, AIL)."""
    pid = ctx.message.first("PID")
    if pid is not None:
        map_patient(ctx, pid)
    map_appointment(ctx, required_segment(ctx, "SCH"), event)
