"""What every message family shares: the patient administration segments.

The IG's message maps reuse the same segment maps wherever the segments occur (PID, PD1,
PV1/PV2, NK1, AL1/IAM, DG1, PR1, IN1, PRT/ROL, RF1, FT1, GT1 and an account from PID-18);
`administration` maps them once for any family, before the family's own segments.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.hl7v2.convert.context import Context, required_segment
from adapters.hl7v2.convert.segments.al1 import map_allergy
from adapters.hl7v2.convert.segments.dg1 import map_condition
from adapters.hl7v2.convert.segments.ft1 import map_charge
from adapters.hl7v2.convert.segments.gt1 import map_guarantor
from adapters.hl7v2.convert.segments.in1 import map_coverage
from adapters.hl7v2.convert.segments.nk1 import map_related_person
from adapters.hl7v2.convert.segments.pid import map_account, map_patient, map_primary_care
from adapters.hl7v2.convert.segments.pr1 import map_procedure
from adapters.hl7v2.convert.segments.prt import map_role
from adapters.hl7v2.convert.segments.pv1 import map_encounter
from adapters.hl7v2.convert.segments.rf1 import map_referral
from adapters.hl7v2.message import Segment

OPTIONAL: dict[str, Callable[[Context, Segment], object]] = {
    "NK1": map_related_person,
    "AL1": map_allergy,
    "IAM": map_allergy,
    "DG1": map_condition,
    "PR1": map_procedure,
    "IN1": map_coverage,
    "PRT": map_role,
    "ROL": map_role,
    "RF1": map_referral,
    "FT1": map_charge,
    "GT1": map_guarantor,
}
"""Segments whose map can fail alone: the rest of the message is mapped (see `optional`)."""


def administration(
    ctx: Context, event: str, *, patient_required: bool = True, visit_required: bool = False
) -> None:
    """PID (required unless `patient_required` is false), PD1, PV1/PV2, PID-18 and the
    optional segments of `OPTIONAL`, wherever they are in the message. The encounter is
    made from PV1 (also in A28/A31, whose ADT_A05 map has PV1[Encounter]) and, unless
    `visit_required`, only when PV1-19 names the visit (a placeholder PV1 makes none)."""
    pid = required_segment(ctx, "PID") if patient_required else ctx.message.first("PID")
    if pid is None:
        return
    patient = map_patient(ctx, pid)
    pd1 = ctx.message.first("PD1")
    if pd1 is not None:
        map_primary_care(ctx, pd1, ctx.entries.resource(patient))
    pv1 = ctx.message.first("PV1")
    if pv1 is not None and (visit_required or pv1.field(19)):
        ctx.encounter = map_encounter(ctx, pv1, event)
    if pid.field(18):
        with ctx.optional(pid):
            ctx.account = map_account(ctx, pid)
    for seg in ctx.message.segments:
        mapper = OPTIONAL.get(seg.name)
        if mapper is not None:
            with ctx.optional(seg):
                mapper(ctx, seg)
