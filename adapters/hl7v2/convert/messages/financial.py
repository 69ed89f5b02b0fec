"""DFT_P03: messages/ "DFT_P03" (the administration segments, orders with their results,
FT1[ChargeItem])."""

from __future__ import annotations

from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.messages.oru import results
from adapters.hl7v2.convert.messages.shared import administration
from adapters.hl7v2.convert.segments.ft1 import map_charge


def charges(ctx: Context, event: str) -> None:
    """DFT_P03/P11: every FT1 a ChargeItem; ORC/OBR/OBX as in a result message."""
    administration(ctx, event)
    results(ctx, required=False)
    for seg in ctx.message.segments:
        if seg.name == "FT1":
            with ctx.optional(seg):
                map_charge(ctx, seg)
