"""TXA (with its OBX) -> DocumentReference: segments/ "TXA[DocumentReference]"."""

from __future__ import annotations

import base64
from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import identifier_criteria, stable_id
from adapters.hl7v2.convert.context import Context, rep_components
from adapters.hl7v2.convert.datatypes import ed_attachment, practitioner_ref
from adapters.hl7v2.message import MessageError, Segment


def map_document(ctx: Context, txa: Segment) -> str:
    """TXA -> DocumentReference: segments/ "TXA[DocumentReference]" (TXA-2 type, TXA-3
    contentType, TXA-6 date, TXA-9 author, TXA-10 authenticator, TXA-12 masterIdentifier,
    TXA-17 docStatus, TXA-18 securityLabel via DocumentConfidentialityStatus, TXA-19 status,
    TXA-25 description); the OBX-5 text ("OBX[DocumentReference]") as a Binary."""
    ctx.at(txa)
    number = txa.components(12)
    value = dt.part(number, 1)
    if not value:
        raise MessageError(
            "TXA-12 (unique document number) is required",
            error_code="101",
            location=txa.location(12),
        )
    master = {
        "system": dt.authority_system(
            dt.part(number, 2), dt.part(number, 3), dt.part(number, 4), ctx.systems
        )
        or ctx.own_system("document"),
        "value": value,
    }
    availability = txa.text(19)
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "masterIdentifier": master,
        "identifier": [master],
        "status": "superseded"
        if availability in ("OB",)
        else ("entered-in-error" if availability in ("CA",) else "current"),
        "subject": {"reference": ctx.patient},
    }
    completion = txa.text(17)
    if completion:
        doc["docStatus"] = (
            "final"
            if completion in ("AU", "LA")
            else ("amended" if completion == "AM" else "preliminary")
        )
    kind = dt.codeable(txa.components(2), "http://terminology.hl7.org/CodeSystem/v2-0270")
    if kind:
        doc["type"] = kind
    created = ctx.time(txa.text(6)) or ctx.time(txa.text(4))
    if created and "T" in created:
        doc["date"] = created
    authors = [a for a in (practitioner_ref(ctx, rep_components(r, txa)) for r in txa.reps(9)) if a]
    if authors:
        doc["author"] = authors
    signer = practitioner_ref(ctx, txa.components(10))
    if signer:
        doc["authenticator"] = signer
    label = tables.coding("DocumentConfidentialityStatus", txa.text(18))
    if label:
        doc["securityLabel"] = [{"coding": [label]}]
    if txa.text(25):
        doc["description"] = txa.text(25)
    if ctx.encounter:
        doc["context"] = {"encounter": [{"reference": ctx.encounter}]}
    lines: list[str] = []
    attachment: dict[str, Any] | None = None
    for seg in ctx.message.segments:
        if seg.name != "OBX":
            continue
        study = dicom_study(seg)
        if study:
            context = doc.setdefault("context", {})
            context.setdefault("related", []).append({"identifier": study})
        elif seg.text(2) == "ED":
            attachment = ed_attachment(seg.components(5))
        else:
            lines.extend(dt.text(rep_components(r, seg)) for r in seg.reps(5))
    content_type = (
        attachment["contentType"]
        if attachment
        else {"TX": "text/plain", "FT": "text/plain", "HTML": "text/html"}.get(
            txa.text(3), "text/plain"
        )
    )
    data = (
        attachment["data"]
        if attachment
        else base64.b64encode("\n".join(lines).encode("utf-8")).decode("ascii")
    )
    if data:
        binary = ctx.entries.put(
            {"resourceType": "Binary", "contentType": content_type, "data": data},
            stable_id("DocumentReference", master["system"], value, data),
        )
        doc["content"] = [{"attachment": {"contentType": content_type, "url": binary}}]
    else:  # a notification without the document's text (MDM_T01, T03, T05, T09)
        doc["content"] = [{"attachment": {"contentType": content_type}}]
    ref = ctx.entries.upsert(doc, identifier_criteria(master))
    ctx.focus.append(ref)
    return ref


def dicom_study(obx: Segment) -> dict[str, Any] | None:
    """An OBX naming a DICOM study (OBX-3 113014 "DICOM Study" of DCM, or an OBX-2 UI value):
    its UID as an identifier for DocumentReference.context.related, not document text."""
    code, system = obx.text(3), obx.text(3, 3).upper()
    if not (obx.text(2) == "UI" or (code == "113014" and system == "DCM")):
        return None
    uid = obx.text(5)
    return {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"} if uid else None
