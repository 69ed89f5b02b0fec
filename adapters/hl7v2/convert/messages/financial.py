"""DFT_P03: messages/ "DFT_P03" (the administration segments, orders with their results,
FT1[ChargeItem])."""

from __future__ import annotations

from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.messages.oru import results
from adapters.hl7v2.convert.messages.shared import administration


def charges(ctx: Context, event: str) -> None:
    """DFT_P03/P11: every FT1 a ChargeItem (mapped with the administration segments, as
    in every family); ORC/OBR/OBX as in a result message."""
    administration(ctx, event)
    results(ctx, required=False)
