"""SIU_S12 and its sibling events: messages/ "SIU_S12"."""

from __future__ import annotations

from adapters.hl7v2.convert.context import Context, required_segment
from adapters.hl7v2.convert.messages.shared import administration
from adapters.hl7v2.convert.segments.obx import map_observation
from adapters.hl7v2.convert.segments.sch import map_appointment


def schedule(ctx: Context, event: str) -> None:
    """SIU_S12: messages/ "SIU_S12" (SCH[Appointment], PID, PATIENT OBX[Observation], AIS,
    AIP, AIL)."""
    administration(ctx, event, patient_required=False)
    map_appointment(ctx, required_segment(ctx, "SCH"), event)
    if ctx.patient is None:
        return
    for seg in ctx.message.segments:
        if seg.name == "OBX":
            with ctx.optional(seg):
                map_observation(ctx, seg, "", None, [])
