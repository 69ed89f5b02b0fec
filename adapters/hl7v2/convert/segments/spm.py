"""SPM -> Specimen: segments/ "SPM[Specimen]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.bundle import identifier_criteria, stable_id
from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.message import Segment


def map_specimen(ctx: Context, spm: Segment) -> str:
    """SPM -> Specimen: segments/ "SPM[Specimen]" (SPM-2 identifier, SPM-4 type,
    SPM-17 collection time, SPM-18 received time)."""
    ctx.at(spm)
    specimen: dict[str, Any] = {"resourceType": "Specimen"}
    comps = spm.components(2)
    value = dt.sub(dt.whole(comps, 1)) or dt.sub(dt.whole(comps, 2))
    ident = {
        "system": ctx.own_system("specimen"),
        "value": value or stable_id(ctx.header.control_id, str(spm.occurrence)),
    }
    specimen["identifier"] = [ident]
    kind = dt.codeable(spm.components(4))
    if kind:
        specimen["type"] = kind
    if ctx.patient:
        specimen["subject"] = {"reference": ctx.patient}
    collected = ctx.time(spm.text(17))
    if collected:
        specimen["collection"] = {"collectedDateTime": collected}
    received = ctx.time(spm.text(18))
    if received:
        specimen["receivedTime"] = received
    ref = ctx.entries.upsert(specimen, identifier_criteria(ident))
    ctx.focus.append(ref)
    return ref
