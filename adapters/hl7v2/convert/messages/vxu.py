"""VXU_V04: messages/ "VXU_V04"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.messages.shared import administration
from adapters.hl7v2.convert.segments.rxa import map_immunization
from adapters.hl7v2.message import MessageError, Segment


def vaccinations(ctx: Context, event: str) -> None:
    """VXU_V04: messages/ "VXU_V04" (PID, ORC, RXA[Immunization], RXR[Immunization], OBX)."""
    administration(ctx, event)
    orc: Segment | None = None
    last: dict[str, Any] | None = None
    made = False
    for seg in ctx.message.segments:
        if seg.name == "ORC":
            orc = seg
        elif seg.name == "RXA":
            last = ctx.entries.resource(map_immunization(ctx, orc, seg))
            made = True
        elif seg.name == "RXR" and last is not None:
            route = dt.codeable(seg.components(1))
            if route:
                last["route"] = route
            site = dt.codeable(seg.components(2))
            if site:
                last["site"] = site
    if not made:
        raise MessageError("A VXU^V04 needs an RXA segment", error_code="100", location="RXA")
