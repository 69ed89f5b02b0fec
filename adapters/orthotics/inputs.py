"""What a design is made from: the checked order and its scans or measurements.

Scans: the DocumentReferences whose `context.related` names the DeviceRequest, except the
outputs of earlier designs, each pointing at its Binary (`attachment.url` `Binary/[id]`);
`type` `foot-scan-left` / `foot-scan-right` (in `DOCUMENT_TYPE`) says which foot, else the
first prescribed side. Without a scan: the four foot measurement Observations listed in
`DeviceRequest.supportingInfo`. Everything is read with the caller's access context.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field, replace
from typing import Any

from adapters.orthotics.codes import MEASUREMENT_FIELD
from adapters.orthotics.model import FootMeasurements, Prescription
from adapters.orthotics.order import (
    Order,
    is_orthosis_order,
    measurement,
    prescription,
    read_order,
)
from adapters.orthotics.parameters import Side
from adapters.orthotics.records import DOCUMENT_TYPE, SCAN_DOCUMENTS
from fhir_server.context import AccessContext
from fhir_server.errors import Issue, Unprocessable
from fhir_server.interactions.binary import blob_of
from fhir_server.interactions.service import FhirService
from fhir_server.model import fhirjson


@dataclass(frozen=True, slots=True)
class Inputs:
    """A checked order and what to design it from: scans by side, or measurements."""

    request: dict[str, Any]
    order: Order
    rx: Prescription
    scans: dict[Side, bytes] = field(default_factory=dict)
    content_type: str = ""
    measurements: FootMeasurements | None = None
    sources: tuple[str, ...] = ()  # references to the inputs, for Task.input

    @property
    def patient(self) -> str | None:
        reference = (self.request.get("subject") or {}).get("reference")
        return str(reference) if reference else None


async def gather(svc: FhirService, ctx: AccessContext, request_id: str) -> Inputs:
    rec = await svc.current(ctx, "DeviceRequest", request_id)
    request = fhirjson.loads(rec.data)
    _designable(request_id, request)
    order = read_order(request)
    inputs = Inputs(request, order, prescription(order))
    scans = await _scans(svc, ctx, request_id, inputs.rx.sides)
    if scans:
        sides, content_type, sources = scans
        return replace(inputs, scans=sides, content_type=content_type, sources=sources)
    measured = await _measurements(svc, ctx, request)
    if measured is None:
        raise Unprocessable(
            f"DeviceRequest/{request_id} has no foot scan (a DocumentReference whose "
            "context.related names it, with the scan as a Binary) and no complete foot "
            "measurements (foot-length, ball-width, heel-width, arch-height Observations "
            "in supportingInfo)",
            expression=("DeviceRequest.supportingInfo",),
        )
    measurements, sources = measured
    return replace(inputs, measurements=measurements, sources=sources)


def _designable(request_id: str, request: dict[str, Any]) -> None:
    """An order the design may issue devices for: a custom foot orthosis (not any other
    DeviceRequest), for a patient of this server (the Devices' `patient`, the files'
    `securityContext`), with a prescriber (the MDR statement names them)."""
    issues: list[Issue] = []
    if not is_orthosis_order(request):
        issues.append(
            Issue(
                f"DeviceRequest/{request_id} is not a custom foot orthosis order (its "
                "codeCodeableConcept has neither custom-foot-orthosis nor HCPCS L3030)",
                "processing",
                expression=("DeviceRequest.code",),
            )
        )
    subject = (request.get("subject") or {}).get("reference")
    if not isinstance(subject, str) or not re.fullmatch(r"Patient/[A-Za-z0-9\-.]{1,64}", subject):
        issues.append(
            Issue(
                "An orthosis order's subject must be a Patient of this server (Patient/[id])",
                "processing",
                expression=("DeviceRequest.subject",),
            )
        )
    if not request.get("requester"):
        issues.append(
            Issue(
                "An orthosis order needs its requester (the prescriber the MDR statement names)",
                "processing",
                expression=("DeviceRequest.requester",),
            )
        )
    if issues:
        raise Unprocessable(issues[0].diagnostics, issues=issues)


async def _scans(
    svc: FhirService, ctx: AccessContext, request_id: str, sides: tuple[Side, ...]
) -> tuple[dict[Side, bytes], str, tuple[str, ...]] | None:
    criteria = [("related", f"DeviceRequest/{request_id}")]
    found = await svc.find(svc.storage, ctx, "DocumentReference", criteria, 50)
    scans: dict[Side, bytes] = {}
    content_type, sources = "", []
    for rec in found:
        document = fhirjson.loads(rec.data)
        kind = document_kind(document)
        if kind is not None and kind not in SCAN_DOCUMENTS:
            continue  # an output of an earlier design
        side: Side = sides[0]
        if kind in ("foot-scan-left", "foot-scan-right"):
            side = "left" if kind == "foot-scan-left" else "right"
        attachment = ((document.get("content") or [{}])[0]).get("attachment") or {}
        data, stored_type = await _attachment(svc, ctx, attachment)
        scans[side] = data
        content_type = attachment.get("contentType") or stored_type
        sources.append(f"DocumentReference/{rec.id}")
    return (scans, content_type, tuple(sources)) if scans else None


async def _attachment(
    svc: FhirService, ctx: AccessContext, attachment: dict[str, Any]
) -> tuple[bytes, str]:
    url = str(attachment.get("url") or "")
    if "Binary/" not in url:
        if attachment.get("data"):
            return base64.b64decode(attachment["data"]), ""
        raise Unprocessable(
            "A scan DocumentReference must point at its Binary (attachment.url Binary/[id])",
            expression=("DocumentReference.content.attachment.url",),
        )
    binary_id = url.rsplit("Binary/", 1)[1].split("/")[0]
    rec = await svc.current(ctx, "Binary", binary_id)
    binary = fhirjson.loads(rec.data)
    ref = blob_of(binary)
    if ref is None:
        try:
            return base64.b64decode(binary.get("data") or ""), binary.get("contentType", "")
        except (binascii.Error, ValueError):
            raise Unprocessable(f"Binary/{binary_id} holds no base64 data") from None
    chunks = [chunk async for chunk in svc.blobs.read(ref.sha256)]
    return b"".join(chunks), str(binary.get("contentType") or "")


async def _measurements(
    svc: FhirService, ctx: AccessContext, request: dict[str, Any]
) -> tuple[FootMeasurements, tuple[str, ...]] | None:
    values: dict[str, float] = {}
    sources: list[str] = []
    for info in request.get("supportingInfo") or ():
        reference = str(info.get("reference") or "")
        if not reference.startswith("Observation/"):
            continue
        rec = await svc.current(ctx, "Observation", reference.split("/", 1)[1])
        found = measurement(fhirjson.loads(rec.data))
        if found is not None:
            values[MEASUREMENT_FIELD[found[0]]] = found[1]
            sources.append(reference)
    if set(values) != set(MEASUREMENT_FIELD.values()):
        return None
    return FootMeasurements(**values), tuple(sources)


def document_kind(document: dict[str, Any]) -> str | None:
    for coding in (document.get("type") or {}).get("coding") or ():
        if coding.get("system") == DOCUMENT_TYPE:
            return str(coding.get("code"))
    return None
