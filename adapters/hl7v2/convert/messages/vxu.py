"""VXU_V04: messages/ "VXU_V04"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.messages.shared import administration
from adapters.hl7v2.convert.segments.obx import map_observation
from adapters.hl7v2.convert.segments.orc import map_service_request, order_identifiers
from adapters.hl7v2.convert.segments.rxa import map_immunization
from adapters.hl7v2.message import MessageError, Segment


def vaccinations(ctx: Context, event: str) -> None:
    """VXU_V04: messages/ "VXU_V04" (PID, PERSON_OBSERVATION OBX[Observation], ORDER: ORC
    [Immunization] and [ServiceRequest], RXA[Immunization], RXR[Immunization], its OBX
    [Observation])."""
    administration(ctx, event)
    orc: Segment | None = None
    order = ""
    last: dict[str, Any] | None = None
    made = False
    for seg in ctx.message.segments:
        if seg.name == "ORC":
            orc, order = seg, seg.text(3) or seg.text(2)
            if order_identifiers(ctx, orc, None):  # an order without a number is no request
                map_service_request(ctx, orc, None)
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
        elif seg.name == "OBX":
            with ctx.optional(seg):
                map_observation(ctx, seg, order, None, [])
    if not made:
        raise MessageError("A VXU^V04 needs an RXA segment", error_code="100", location="RXA")
