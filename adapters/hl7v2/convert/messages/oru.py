"""ORU_R01: messages/ "ORU_R01"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.messages.shared import administration
from adapters.hl7v2.convert.segments.nte import map_note
from adapters.hl7v2.convert.segments.obr import map_diagnostic_report
from adapters.hl7v2.convert.segments.obx import map_observation
from adapters.hl7v2.convert.segments.orc import map_service_request
from adapters.hl7v2.convert.segments.spm import map_specimen
from adapters.hl7v2.message import MessageError, Segment


def oru(ctx: Context, event: str) -> None:
    """ORU_R01 and OUL_R22: messages/ "ORU_R01", "OUL_R22" (PID, PV1, ORC, OBR, OBX, NTE,
    SPM)."""
    administration(ctx, event, patient_required=False)
    results(ctx, required=True)


def results(ctx: Context, *, required: bool) -> None:
    """Each OBR a ServiceRequest and a DiagnosticReport, its OBX Observations (with their
    NTE), its SPM Specimens; a message of results without OBR is refused if `required`."""
    orc: Segment | None = None
    report: dict[str, Any] | None = None
    order = ""
    specimens: list[str] = []
    last_obs: dict[str, Any] | None = None
    for seg in ctx.message.segments:
        if seg.name == "ORC":
            orc = seg
        elif seg.name == "OBR":
            order = seg.text(3) or seg.text(2) or (orc.text(3) or orc.text(2) if orc else "")
            specimens = []
            request = map_service_request(ctx, orc, seg)
            ref = map_diagnostic_report(ctx, orc, seg, request)
            report = ctx.entries.resource(ref)
            orc, last_obs = None, None
        elif seg.name == "OBX":
            last_obs = None  # an NTE after an OBX left out is left out with it
            with ctx.optional(seg):
                obs_ref = map_observation(ctx, seg, order, report, specimens)
                last_obs = ctx.entries.resource(obs_ref)
                if report is not None:
                    report.setdefault("result", []).append({"reference": obs_ref})
        elif seg.name == "SPM":
            with ctx.optional(seg):
                spec = map_specimen(ctx, seg)
                specimens.append(spec)
                if report is not None:
                    report.setdefault("specimen", []).append({"reference": spec})
        elif seg.name == "NTE" and last_obs is not None:
            note = map_note(seg)
            if note:
                last_obs.setdefault("note", []).append(note)
    if report is None and required:
        raise MessageError(
            "A result message needs an OBR segment", error_code="100", location="OBR"
        )
