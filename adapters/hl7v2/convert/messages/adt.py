"""ADT_A01 and the events sharing its structure, ADT_A40 merges: messages/ "ADT_A01", "ADT_A40"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.messages.shared import administration
from adapters.hl7v2.convert.segments.obx import map_observation
from adapters.hl7v2.convert.segments.pid import map_patient
from adapters.hl7v2.message import MessageError


def adt(ctx: Context, event: str) -> None:
    """ADT_A01 and the events sharing its structure (and BAR, whose segments are the same):
    messages/ "ADT_A01", "BAR_P01"; OBX at the top level as exam observations."""
    if event in ("A40", "A39"):
        merge(ctx)
        return
    # A28/A31 tell about a person: their PV1 is often a placeholder, a visit only with PV1-19
    administration(ctx, event, visit_required=event not in ("A28", "A31"))
    pv1 = ctx.message.first("PV1")
    visit = pv1.text(19) if pv1 is not None else ""
    for seg in ctx.message.segments:
        if seg.name == "OBX":
            with ctx.optional(seg):
                map_observation(ctx, seg, visit or (ctx.patient_key or ""), None, [])


def merge(ctx: Context) -> None:
    """ADT_A39/A40 merge: messages/ "ADT_A40" (PID[Patient], MRG-1 to Patient.link)."""
    segments = ctx.message.segments
    found = False
    for i, seg in enumerate(segments):
        if seg.name != "PID":
            continue
        survivor = map_patient(ctx, seg)
        mrg = next((s for s in segments[i + 1 :] if s.name in ("MRG", "PID")), None)
        if mrg is None or mrg.name != "MRG":
            raise MessageError(
                "A merge needs an MRG segment after each PID",
                error_code="100",
                location=f"MRG^{seg.occurrence}",
            )
        merged_id = ctx.identifier(mrg.components(1), mrg.location(1))
        if merged_id is None:
            raise MessageError(
                "MRG-1 (prior patient identifier) is required",
                error_code="101",
                location=mrg.location(1),
            )
        # The merged patient keeps what is known of it: created (bare) only if unknown,
        # then patched inactive and linked, the same way on a replay.
        criteria = identifier_criteria(merged_id)
        merged = ctx.entries.create_if_none(
            {"resourceType": "Patient", "identifier": [merged_id]}, criteria
        )
        ctx.entries.patch("Patient", criteria, merge_patch(survivor))
        ctx.entries.resource(survivor).setdefault("link", []).append(
            {"other": {"reference": merged}, "type": "replaces"}
        )
        ctx.merged_keys.append(criteria.removeprefix("identifier="))
        ctx.focus.append(merged)
        found = True
    if not found:
        raise MessageError("The message has no PID segment", error_code="100", location="PID")


def merge_patch(survivor: str) -> dict[str, Any]:
    """FHIRPath Patch: `active` false, and one `replaced-by` link to `survivor`."""

    def op(kind: str, path: str, *parts: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": "operation",
            "part": [
                {"name": "type", "valueCode": kind},
                {"name": "path", "valueString": path},
                *parts,
            ],
        }

    return {
        "resourceType": "Parameters",
        "parameter": [
            op("delete", "Patient.active"),
            op(
                "add",
                "Patient",
                {"name": "name", "valueString": "active"},
                {"name": "value", "valueBoolean": False},
            ),
            op("delete", "Patient.link.where(type = 'replaced-by')"),
            op(
                "add",
                "Patient",
                {"name": "name", "valueString": "link"},
                {
                    "name": "value",
                    "part": [
                        {"name": "other", "valueReference": {"reference": survivor}},
                        {"name": "type", "valueCode": "replaced-by"},
                    ],
                },
            ),
        ],
    }
