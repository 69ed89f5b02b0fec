"""MDM_T02: messages/ "MDM_T02"."""

from __future__ import annotations

from adapters.hl7v2.convert.context import Context, required_segment
from adapters.hl7v2.convert.messages.shared import administration
from adapters.hl7v2.convert.segments.orc import map_service_request
from adapters.hl7v2.convert.segments.txa import map_document
from adapters.hl7v2.message import Segment


def documents(ctx: Context, event: str) -> None:
    """MDM_T02: messages/ "MDM_T02" (PID, PV1, COMMON_ORDER ORC/OBR[ServiceRequest],
    TXA[DocumentReference] with context.related the orders, OBX[DocumentReference])."""
    administration(ctx, "")
    orders = _common_orders(ctx)
    ref = map_document(ctx, required_segment(ctx, "TXA"))
    if orders:
        context = ctx.entries.resource(ref).setdefault("context", {})
        context.setdefault("related", [])[:0] = [{"reference": r} for r in orders]


def _common_orders(ctx: Context) -> list[str]:
    """Each ORC (with the OBR that follows it) before the TXA: a ServiceRequest; an order
    that cannot be mapped is left out with a warning."""
    out: list[str] = []
    orc: Segment | None = None
    for seg in ctx.message.segments:
        if seg.name == "TXA":
            break
        if seg.name == "ORC":
            if orc is not None:
                with ctx.optional(orc):
                    out.append(map_service_request(ctx, orc, None))
            orc = seg
        elif seg.name == "OBR":
            with ctx.optional(seg):
                out.append(map_service_request(ctx, orc, seg))
            orc = None
    if orc is not None:
        with ctx.optional(orc):
            out.append(map_service_request(ctx, orc, None))
    return out
