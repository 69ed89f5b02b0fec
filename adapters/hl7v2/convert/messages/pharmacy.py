"""RDE_O11/O25 and RDS_O13: messages/ "RDE_O11", "RDS_O13" (ORC with RXO/RXE as a
MedicationRequest, RXD as a MedicationDispense, RXR the route, OBX Observations)."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.messages.shared import administration
from adapters.hl7v2.convert.segments.obx import map_observation
from adapters.hl7v2.convert.segments.rxe import map_dispense, map_medication_request
from adapters.hl7v2.message import MessageError, Segment


def pharmacy(ctx: Context, event: str) -> None:
    """One MedicationRequest per ORC (from its RXE, else its RXO), one MedicationDispense
    per RXD, each linked to the order it follows; OBX[Observation] as the request's
    supportingInformation."""
    administration(ctx, event)
    orc: Segment | None = None
    order_rx: Segment | None = None
    request: str | None = None
    last: dict[str, Any] | None = None
    made = False
    for seg in ctx.message.segments:
        if seg.name == "ORC":
            orc, order_rx, request, last = seg, None, None, None
        elif seg.name in ("RXO", "RXE") and (seg.name == "RXE" or order_rx is None):
            order_rx = seg
            request = map_medication_request(ctx, orc, seg)
            last = ctx.entries.resource(request)
            made = True
        elif seg.name == "RXD":
            with ctx.optional(seg):
                last = ctx.entries.resource(map_dispense(ctx, seg, request))
                made = True
        elif seg.name == "RXR" and last is not None:
            _route(seg, last)
        elif seg.name == "OBX":  # an observation the order comes with
            with ctx.optional(seg):
                order = (orc.text(2) or orc.text(3)) if orc is not None else ""
                observation = map_observation(ctx, seg, order, None, [])
                if request is not None:
                    ctx.entries.resource(request).setdefault("supportingInformation", []).append(
                        {"reference": observation}
                    )
    if not made:
        raise MessageError(
            "A pharmacy message needs an RXO, RXE or RXD segment", error_code="100", location="RXE"
        )


def _route(rxr: Segment, resource: dict[str, Any]) -> None:
    """RXR-1 route (and RXR-2 site) into the dosage of a request or dispense."""
    route = dt.codeable(rxr.components(1))
    if not route:
        return
    dosage = dt.clean({"route": route, "site": dt.codeable(rxr.components(2))})
    resource.setdefault("dosageInstruction", []).append(dosage)
