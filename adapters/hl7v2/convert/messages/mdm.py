"""MDM_T02: messages/ "MDM_T02"."""

from __future__ import annotations

from adapters.hl7v2.convert.context import Context, required_segment
from adapters.hl7v2.convert.messages.shared import administration
from adapters.hl7v2.convert.segments.txa import map_document


def documents(ctx: Context, event: str) -> None:
    """MDM_T02: messages/ "MDM_T02" (PID, PV1, TXA[DocumentReference], OBX[DocumentReference])."""
    administration(ctx, "")
    map_document(ctx, required_segment(ctx, "TXA"))
