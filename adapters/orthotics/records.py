"""The FHIR resources that issue a design: one transaction Bundle, all or nothing.

For each insole: a `Device` (patient, serial number, manufacture date, `definition` -> the
`DeviceDefinition` of its material and process, `parent` -> the pair's Device, `property`
for what was measured on the mesh), its binary STL and 3MF as `Binary` (content already in
the blob store) and a `DocumentReference` for each file (contentType, size, SHA-1 `hash`,
`context.related` -> the DeviceRequest and the Device). For the order: the PNG preview and
the EU MDR Annex XIII statement (a PDF, kept with the Device it is about), and the `Task`
completed with every output. Ids are chosen here, so attachments can name `Binary/<id>`.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.orthotics.codes import BASE, UCUM
from adapters.orthotics.model import Insole
from adapters.orthotics.parameters import PROCESSES, Process
from fhir_server.interactions.binary import blob_resource
from fhir_server.storage.blobs import BlobRef

DOCUMENT_TYPE = BASE + "CodeSystem:orthosis-document"
DIMENSION = BASE + "CodeSystem:orthosis-dimension"
TASK_CODE = BASE + "CodeSystem:orthosis-task"
DEFINITION_ID = BASE + "orthosis-definition"
STL_TYPE = "model/stl"
THREE_MF_TYPE = "model/3mf"
SCAN_DOCUMENTS = ("foot-scan", "foot-scan-left", "foot-scan-right")


@dataclass(frozen=True, slots=True)
class File:
    """A stored blob about to become a Binary and its DocumentReference."""

    kind: str  # print-stl, print-3mf, preview, statement
    content_type: str
    ref: BlobRef
    title: str
    devices: tuple[str, ...]  # Device ids it belongs to
    binary_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    document_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(slots=True)
class Issued:
    """What one design issues, collected before the transaction is built."""

    request_id: str
    patient: str | None  # "Patient/x"
    process: Process
    when: str  # manufacture date-time
    files: list[File] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)

    def entries(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        """The transaction's entries: every resource by PUT, the Task last."""
        resources = [definition(self.process), *self.devices]
        for file in self.files:
            resources.append(self._binary(file))
            resources.append(self._document(file))
        resources.append(task)
        return [_put(resource) for resource in resources]

    def _binary(self, file: File) -> dict[str, Any]:
        return blob_resource(file.content_type, file.ref, self.patient, file.binary_id)

    def _document(self, file: File) -> dict[str, Any]:
        attachment = {
            "contentType": file.content_type,
            "url": f"Binary/{file.binary_id}",
            "size": file.ref.size,
            "hash": base64.b64encode(bytes.fromhex(file.ref.sha1)).decode("ascii"),
            "title": file.title,
            "creation": self.when,
        }
        related = [{"reference": f"DeviceRequest/{self.request_id}"}]
        related += [{"reference": f"Device/{device}"} for device in file.devices]
        document: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "id": file.document_id,
            "status": "current",
            "type": {"coding": [{"system": DOCUMENT_TYPE, "code": file.kind}]},
            "date": self.when,
            "description": file.title,
            "content": [{"attachment": attachment}],
            "context": {"related": related},
        }
        if self.patient:
            document["subject"] = {"reference": self.patient}
        return document


def definition(process: Process) -> dict[str, Any]:
    """The DeviceDefinition of a custom insole printed with `process` (one per process)."""
    spec = PROCESSES[process]
    return {
        "resourceType": "DeviceDefinition",
        "id": f"orthosis-{process}",
        "identifier": [{"system": DEFINITION_ID, "value": process}],
        "deviceName": [
            {"name": f"Custom foot orthosis, {spec.display}", "type": "user-friendly-name"}
        ],
        "material": [{"substance": {"text": spec.material}}],
        "property": [
            {
                "type": {"text": "minimum wall thickness"},
                "valueQuantity": [_mm(spec.min_wall_mm)],
            },
            {"type": {"text": "print process"}, "valueCode": [{"text": spec.display}]},
        ],
    }


def device(
    id: str,
    issued: Issued,
    serial: str,
    name: str,
    *,
    parent: str | None = None,
    insole: Insole | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "id": id,
        "definition": {"reference": f"DeviceDefinition/orthosis-{issued.process}"},
        "status": "active",
        "serialNumber": serial,
        "manufactureDate": issued.when,
        "deviceName": [{"name": name, "type": "user-friendly-name"}],
    }
    if issued.patient:
        resource["patient"] = {"reference": issued.patient}
    if parent:
        resource["parent"] = {"reference": f"Device/{parent}"}
    if insole is not None:
        resource["property"] = _properties(insole)
    return resource


def _properties(insole: Insole) -> list[dict[str, Any]]:
    found = [
        {"type": _dimension(name), "valueQuantity": [_mm(value)]}
        for name, value in sorted(insole.dimensions_mm.items())
    ]
    volume = {"value": round(insole.volume_mm3, 3), "unit": "mm3", "system": UCUM, "code": "mm3"}
    found.append({"type": _dimension("volume"), "valueQuantity": [volume]})
    faces = {"value": insole.faces, "unit": "faces"}
    found.append({"type": _dimension("faces"), "valueQuantity": [faces]})
    return found


def _dimension(name: str) -> dict[str, Any]:
    return {"coding": [{"system": DIMENSION, "code": name}], "text": name.replace("_", " ")}


def _mm(value: float) -> dict[str, Any]:
    return {"value": round(float(value), 3), "unit": "mm", "system": UCUM, "code": "mm"}


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"fullUrl": url, "resource": resource, "request": {"method": "PUT", "url": url}}


def outputs(files: Sequence[File], devices: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Task.output: every Device and DocumentReference issued."""
    found = [_output("device", f"Device/{d['id']}") for d in devices]
    found += [_output(f.kind, f"DocumentReference/{f.document_id}") for f in files]
    return found


def _output(kind: str, reference: str) -> dict[str, Any]:
    return {
        "type": {"coding": [{"system": DOCUMENT_TYPE, "code": kind}], "text": kind},
        "valueReference": {"reference": reference},
    }
