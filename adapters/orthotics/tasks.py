"""The Task of one design run (https://hl7.org/fhir/R4/task.html), as plain resources.

`focus` the DeviceRequest, `for` the patient, `input` what the design is made from; `status`
requested -> in-progress -> completed or failed, `businessStatus` the step (queued,
designing, issuing, then issued, refused or error); a completed Task lists every Device and
DocumentReference issued in `output`, a failed one its reasons in `statusReason` and
`output`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from adapters.orthotics import records
from adapters.orthotics.model import Design
from adapters.orthotics.records import TASK_CODE, Issued
from fhir_server.errors import Issue

if TYPE_CHECKING:
    from adapters.orthotics.inputs import Inputs

DESIGN = "design-orthosis"
ACTIVE = "requested,in-progress"


def new_task(request_id: str, inputs: Inputs) -> dict[str, Any]:
    """A requested Task for a run of $design-orthosis on DeviceRequest/`request_id`."""
    when = now()
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": uuid.uuid4().hex,
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE, "code": DESIGN}]},
        "focus": {"reference": f"DeviceRequest/{request_id}"},
        "authoredOn": when,
        "lastModified": when,
        "businessStatus": {"text": "queued"},
        "input": [
            {"type": {"text": "source"}, "valueReference": {"reference": source}}
            for source in inputs.sources
        ],
    }
    if inputs.patient:
        task["for"] = {"reference": inputs.patient}
    if not task["input"]:
        del task["input"]
    return task


def step(task: dict[str, Any], status: str, name: str) -> dict[str, Any]:
    """The Task at its next step: `status` and `businessStatus` `name`."""
    return {**task, "status": status, "businessStatus": {"text": name}, "lastModified": now()}


def completed(task: dict[str, Any], issued: Issued, design: Design) -> dict[str, Any]:
    done = step(task, "completed", "issued")
    done["output"] = records.outputs(issued.files, issued.devices)
    done["output"] += [
        {"type": {"text": "repair"}, "valueString": repair} for repair in design.repairs
    ]
    return done


def failed(task: dict[str, Any], issues: list[Issue], reason: str) -> dict[str, Any]:
    done = step(task, "failed", reason)
    done["statusReason"] = {"text": "; ".join(i.diagnostics for i in issues)[:4000]}
    done["output"] = [
        {"type": {"text": "issue"}, "valueString": issue.diagnostics} for issue in issues
    ]
    return done


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
