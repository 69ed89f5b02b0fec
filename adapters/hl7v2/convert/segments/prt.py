"""PRT and ROL -> PractitionerRole: segments/ "PRT[PractitionerRole]",
"ROL[Encounter-PractitionerRole]" (who took part, in which role)."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, own_id, with_identifier
from adapters.hl7v2.convert.datatypes import practitioner_ref
from adapters.hl7v2.message import Segment

_FIELDS = {"PRT": (5, 4, 11, 12), "ROL": (4, 3, 5, 6)}  # person, role, begin, end


def map_role(ctx: Context, seg: Segment) -> str | None:
    """PRT-5/ROL-4 person as the practitioner, PRT-4/ROL-3 role as code, PRT-6 specialty,
    PRT-11/12 (ROL-5/6) period; nothing when the segment names no person."""
    person, role, begin, end = _FIELDS[seg.name]
    ctx.at(seg)
    who = practitioner_ref(ctx, seg.components(person))
    if who is None:
        return None
    practitioner_role: dict[str, Any] = {"resourceType": "PractitionerRole", "practitioner": who}
    code = dt.codeable(seg.components(role), "http://terminology.hl7.org/CodeSystem/v2-0912")
    if code:
        practitioner_role["code"] = [code]
    specialty = dt.codeable(seg.components(6)) if seg.name == "PRT" else None
    if specialty:
        practitioner_role["specialty"] = [specialty]
    period = dt.clean({"start": ctx.time(seg.text(begin)), "end": ctx.time(seg.text(end))})
    if period:
        practitioner_role["period"] = period
    first = ((code or {}).get("coding") or [{}])[0]
    key = f"{who.get('reference') or who.get('display')}|{first.get('code')}"
    ident = own_id(ctx, "practitioner-role", key)
    return ctx.entries.upsert(with_identifier(practitioner_role, ident), identifier_criteria(ident))
