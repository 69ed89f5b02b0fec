"""MDM_T02: messages/ "MDM_T02"."""

from __future__ import annotations

from adapters.hl7v2.convert.context import Context, required_segment
from adapters.hl7v2.convert.segments.pid import map_patient
from adapters.hl7v2.convert.segments.pv1 import map_encounter
from adapters.hl7v2.convert.segments.txa import map_document


def documents(ctx: Context, event: str) -> None:
    """MDM_T02: messages/ "MDM_T02" (PID, PV1, TXA[DocumentReference], OBX[DocumentReference])."""
    map_patient(ctx, required_segment(ctx, "PID"))
    pv1 = ctx.message.first("PV1")
    if pv1 is not None and pv1.field(19):
        ctx.encounter = map_encounter(ctx, pv1, "")
    map_document(ctx, required_segment(ctx, "TXA"))
