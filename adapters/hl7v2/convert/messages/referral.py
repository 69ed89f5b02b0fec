"""REF_I12: messages/ "REF_I12" (RF1[ServiceRequest], the administration segments, and
OBR/OBX results that come with the referral)."""

from __future__ import annotations

from adapters.hl7v2.convert.context import Context, required_segment
from adapters.hl7v2.convert.messages.oru import results
from adapters.hl7v2.convert.messages.shared import administration
from adapters.hl7v2.convert.segments.rf1 import map_referral


def referral(ctx: Context, event: str) -> None:
    administration(ctx, event)
    map_referral(ctx, required_segment(ctx, "RF1"))
    results(ctx, required=False)
