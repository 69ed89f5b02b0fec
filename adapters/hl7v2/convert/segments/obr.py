"""OBR -> DiagnosticReport: segments/ "OBR[DiagnosticReport]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.segments.orc import kind_of
from adapters.hl7v2.message import MessageError, Segment


def map_diagnostic_report(ctx: Context, orc: Segment | None, obr: Segment, request: str) -> str:
    """OBR -> DiagnosticReport: segments/ "OBR[DiagnosticReport]" (OBR-3 identifier, OBR-4
    code, OBR-7 effective, OBR-22 issued, OBR-25 status via ResultStatus[Non-Queries],
    OBR-32 resultsInterpreter)."""
    ctx.at(obr)
    code = dt.codeable(obr.components(4))
    if code is None:
        raise MessageError(
            "OBR-4 (universal service identifier) is required",
            error_code="101",
            location=obr.location(4),
        )
    status = tables.lookup("ResultStatus[Non-Queries]", obr.text(25))
    idents = ctx.entries.resource(request)["identifier"]  # the order's, as mapped
    filler = next((i for i in idents if kind_of(i) == "FILL"), idents[0])
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{k: v for k, v in filler.items() if k != "type"}],
        "basedOn": [{"reference": request}],
        "status": status[0] if status else "unknown",
        "code": code,
    }
    if ctx.patient:
        report["subject"] = {"reference": ctx.patient}
    if ctx.encounter:
        report["encounter"] = {"reference": ctx.encounter}
    effective = ctx.time(obr.text(7))
    if effective:
        report["effectiveDateTime"] = effective
    issued = ctx.time(obr.text(22))
    if issued and "T" in issued:
        report["issued"] = issued
    ref = ctx.entries.upsert(report, identifier_criteria(report["identifier"][0]))
    ctx.focus.append(ref)
    return ref
