"""PPR_PC1/PC2/PC3: messages/ "PPR_PC1" (PRB[Condition] for each problem)."""

from __future__ import annotations

from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.messages.shared import administration
from adapters.hl7v2.convert.segments.prb import map_problem
from adapters.hl7v2.message import MessageError


def problems(ctx: Context, event: str) -> None:
    administration(ctx, event)
    found = [seg for seg in ctx.message.segments if seg.name == "PRB"]
    if not found:
        raise MessageError("A PPR message needs a PRB segment", error_code="100", location="PRB")
    for seg in found:
        map_problem(ctx, seg)
