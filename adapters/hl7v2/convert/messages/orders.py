"""ORM_O01 and OML_O21: messages/ "ORM_O01", "OML_O21"."""

from __future__ import annotations

from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.messages.shared import administration
from adapters.hl7v2.convert.segments.obx import map_observation
from adapters.hl7v2.convert.segments.orc import map_service_request
from adapters.hl7v2.convert.segments.spm import map_specimen
from adapters.hl7v2.message import MessageError, Segment


def orders(ctx: Context, event: str) -> None:
    """ORM_O01 / OML_O21: messages/ "ORM_O01", "OML_O21" (ORC[ServiceRequest], OBR, and
    for OML the SPM[Specimen] of each request, in ServiceRequest.specimen)."""
    administration(ctx, event, patient_required=False)
    orc: Segment | None = None
    request: str | None = None
    for seg in ctx.message.segments:
        if seg.name == "ORC":
            if orc is not None:
                request = map_service_request(ctx, orc, None)
            orc = seg
        elif seg.name == "OBR":
            request = map_service_request(ctx, orc, seg)
            orc = None
        elif seg.name == "SPM":
            with ctx.optional(seg):
                specimen = map_specimen(ctx, seg)
                if request is not None:
                    ctx.entries.resource(request).setdefault("specimen", []).append(
                        {"reference": specimen}
                    )
        elif seg.name == "OBX" and (request is not None or orc is not None):
            if orc is not None:  # the information of an order with no OBR (ORM: ORC, RXO)
                request, orc = map_service_request(ctx, orc, None), None
            assert request is not None
            with ctx.optional(seg):  # information the order comes with (OML_O21 OBX)
                order = ctx.entries.resource(request)["identifier"][0]["value"]
                observation = map_observation(ctx, seg, order, None, [])
                ctx.entries.resource(request).setdefault("supportingInfo", []).append(
                    {"reference": observation}
                )
    if orc is not None:
        request = map_service_request(ctx, orc, None)
    if request is None:
        raise MessageError(
            "An order message needs an ORC or OBR segment", error_code="100", location="ORC"
        )
