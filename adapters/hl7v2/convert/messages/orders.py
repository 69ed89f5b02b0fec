"""ORM_O01 and OML_O21: messages/ "ORM_O01", "OML_O21"."""

from __future__ import annotations

from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.messages.shared import administration
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
            specimen = map_specimen(ctx, seg)
            if request is not None:
                ctx.entries.resource(request).setdefault("specimen", []).append(
                    {"reference": specimen}
                )
    if orc is not None:
        request = map_service_request(ctx, orc, None)
    if request is None:
        raise MessageError(
            "An order message needs an ORC or OBR segment", error_code="100", location="ORC"
        )
