"""`DeviceRequest/[id]/$design-orthosis` and `Device/[id]/$print-files`.

$design-orthosis (POST) designs the insoles a checked order prescribes, from the foot scans
indexed by DocumentReferences whose `context.related` names the DeviceRequest, or else from
the four foot measurement Observations in `DeviceRequest.supportingInfo`. A `Task` records
each run (`focus` the DeviceRequest, `for` the patient), moving requested -> in-progress ->
completed or failed, with `businessStatus` naming the step (queued, designing, issuing,
issued, refused, error). Synchronously it answers the completed Task; with
`Prefer: respond-async` (https://hl7.org/fhir/R4/async.html) it answers 202 Accepted at once
with `Content-Location` naming the Task to poll (`tasks`). The design is CPU-bound: it runs
in a worker process (`worker`), one design at a time per server process; a second design
of an order while one runs in this process is a 409.

A scan the geometry cannot use (ScanRejected) or a design failing a printability gate
(DesignRefused) is answered 422 with an OperationOutcome naming the reason or each failed
gate with its measured value and limit; nothing is issued and the Task fails with the same
words. What is issued (see `records`) is written in one transaction with the Task's
completion: no half-issued design. A Task still requested or in progress when the server
starts was left by a process that stopped mid-run: it is marked failed (not resumed), so a
client sees it end and may start the design again.

$print-files (GET) lists the print files (STL and 3MF) of one Device as Attachments whose
`url` fetches the bytes (`Accept: model/stl`), with their size and SHA-1.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.orthotics import records, tasks
from adapters.orthotics.codes import PARAMETERS
from adapters.orthotics.inputs import Inputs, gather
from adapters.orthotics.model import Design, MdrStatement, PrintLimits
from adapters.orthotics.parameters import PROCESSES
from adapters.orthotics.records import DOCUMENT_TYPE, TASK_CODE, File, Issued
from adapters.orthotics.worker import Kind, Worker
from fhir_server.context import SYSTEM
from fhir_server.errors import Conflict, FhirError, Issue
from fhir_server.interactions.operations import Operation, OperationCall
from fhir_server.interactions.request import Request, Response
from fhir_server.interactions.service import FhirService
from fhir_server.model import fhirjson

log = logging.getLogger("fhir_server.orthotics")
WRITES = ("Task", "Device", "DeviceDefinition", "Binary", "DocumentReference")


@dataclass(frozen=True, slots=True)
class Options:
    """What a deployment sets: who makes the devices, and what its printer takes; `worker`
    is where the CPU-bound design runs: a worker process (the server's interpreter lock
    stays free) or a thread of the server (tests that stand in for the geometry)."""

    manufacturer: str = "Custom orthosis manufacturer (set FHIR_ORTHOTICS_MANUFACTURER)"
    limits: PrintLimits = field(default_factory=PrintLimits)
    worker: Kind = "process"


class Workflow:
    """The two operations over one service, and the design jobs running in this process."""

    def __init__(self, svc: FhirService, options: Options) -> None:
        self.svc = svc
        self.options = options
        self._jobs: set[asyncio.Task[Any]] = set()
        # DeviceRequest id -> the Task designing it ("" while its inputs are read): one
        # design of an order at a time, not one set of Devices per impatient click
        self._designing: dict[str, str] = {}
        self.worker = Worker(options.worker)

    def operations(self) -> list[Operation]:
        design = Operation(
            tasks.DESIGN,
            self._design_operation,
            frozenset({"instance"}),
            frozenset({"DeviceRequest"}),
            affects_state=True,
            access="data",
        )
        files = Operation(
            "print-files",
            self._print_files,
            frozenset({"instance"}),
            frozenset({"Device"}),
            access="data",
        )
        return [design, files]

    # -- $design-orthosis ---------------------------------------------------------------

    async def _design_operation(self, svc: FhirService, call: OperationCall) -> Response:
        assert call.id is not None
        for type in WRITES:
            svc.policy.check(call.context, "create", type)
        running = self._designing.get(call.id)
        if running is not None:
            raise Conflict(
                f"DeviceRequest/{call.id} is being designed already"
                + (f" (Task/{running})" if running else "")
                + ": wait for that design to end before starting another"
            )
        self._designing[call.id] = ""  # claimed before the first await
        try:
            inputs = await gather(svc, call.context, call.id)
            task = tasks.new_task(call.id, inputs)
            await self._put(task)
        except BaseException:
            del self._designing[call.id]
            raise
        self._designing[call.id] = str(task["id"])
        if call.prefer_async:
            job = asyncio.create_task(self._run(task, inputs, raise_errors=False))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)
            location = f"{call.base}/Task/{task['id']}"
            return Response(202, task, {"Content-Location": location})
        done = await self._run(task, inputs, raise_errors=True)
        return Response(200, done, {"Content-Location": f"{call.base}/Task/{task['id']}"})

    async def _run(
        self, task: dict[str, Any], inputs: Inputs, *, raise_errors: bool
    ) -> dict[str, Any]:
        """Design, check, issue; the Task follows each step and ends completed or failed."""
        try:
            return await self._design_and_issue(task, inputs, raise_errors=raise_errors)
        finally:
            self._designing.pop(str(inputs.request["id"]), None)

    async def _design_and_issue(
        self, task: dict[str, Any], inputs: Inputs, *, raise_errors: bool
    ) -> dict[str, Any]:
        try:
            task = await self._step(task, "in-progress", "designing")
            design = await self.worker.design(inputs, self.options.limits)
            task = await self._step(task, "in-progress", "issuing")
            issued = await self._issue(inputs, design)
            task = tasks.completed(task, issued, design)
            await self._transaction(issued.entries(task))
            return task
        except FhirError as error:
            await self._fail(task, error.issues, "refused" if error.status == 422 else "error")
            if raise_errors:
                raise
        except Exception:
            log.exception("the design of Task/%s failed", task["id"])
            await self._fail(task, [Issue("The design failed on the server", "exception")])
            if raise_errors:
                raise
        return task

    async def _issue(self, inputs: Inputs, design: Design) -> Issued:
        """Blobs stored and the Devices made, ready for the one transaction."""
        when = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        request_id = str(inputs.request["id"])
        issued = Issued(request_id, inputs.patient, inputs.rx.process, when)
        stamp = when[:10].replace("-", "")
        pair_id = uuid.uuid4().hex if len(design.insoles) > 1 else None
        name = f"Custom foot orthosis ({PROCESSES[inputs.rx.process].display})"
        if pair_id:
            serial = f"ORTH-{stamp}-{pair_id[:8].upper()}"
            issued.devices.append(records.device(pair_id, issued, serial, name + ", pair"))
        for insole in design.insoles:
            device_id = uuid.uuid4().hex
            serial = f"ORTH-{stamp}-{device_id[:8].upper()}"
            insole_name = f"{name}, {insole.side}"
            issued.devices.append(
                records.device(
                    device_id, issued, serial, insole_name, parent=pair_id, insole=insole
                )
            )
            owners = (device_id, pair_id) if pair_id else (device_id,)
            title = f"{insole.side} insole"
            await self._file(issued, "print-stl", records.STL_TYPE, insole.stl, title, owners)
            await self._file(
                issued, "print-3mf", records.THREE_MF_TYPE, insole.three_mf, title, owners
            )
        every = tuple(d["id"] for d in issued.devices)
        await self._file(issued, "preview", "image/png", design.preview_png, "preview", every)
        pdf = await self.worker.statement_pdf(self._statement(inputs, issued))
        await self._file(issued, "statement", "application/pdf", pdf, "MDR Annex XIII", every)
        return issued

    async def _file(
        self,
        issued: Issued,
        kind: str,
        content_type: str,
        data: bytes,
        title: str,
        devices: tuple[str, ...],
    ) -> None:
        ref = await self.svc.blobs.put(_once(data))
        issued.files.append(File(kind, content_type, ref, title, devices))

    def _statement(self, inputs: Inputs, issued: Issued) -> MdrStatement:
        requester = inputs.request.get("requester") or {}
        characteristics = {
            p.display: _shown(inputs.order.values[p.code], p.unit)
            for p in PARAMETERS
            if p.code in inputs.order.values
        }
        return MdrStatement(
            patient_code=(inputs.patient or "unknown").split("/")[-1],
            prescriber=str(requester.get("display") or requester.get("reference") or "unknown"),
            manufacturer=self.options.manufacturer,
            device_description=f"Custom-made foot orthosis (insole), order {issued.request_id}",
            design_characteristics=characteristics,
            serial_numbers=tuple(str(d["serialNumber"]) for d in issued.devices),
            date=issued.when[:10],
        )

    # -- the Task -----------------------------------------------------------------------

    async def _step(self, task: dict[str, Any], status: str, name: str) -> dict[str, Any]:
        task = tasks.step(task, status, name)
        await self._put(task)
        return task

    async def _fail(self, task: dict[str, Any], issues: list[Issue], reason: str = "error") -> None:
        try:
            await self._put(tasks.failed(task, issues, reason))
        except Exception:
            log.exception("could not mark Task/%s failed", task["id"])

    async def _put(self, resource: dict[str, Any]) -> None:
        path = f"{resource['resourceType']}/{resource['id']}"
        await self.svc.handle(Request("PUT", path, body=resource, context=SYSTEM))

    async def _transaction(self, entries: list[dict[str, Any]]) -> None:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        await self.svc.handle(Request("POST", "", body=bundle, context=SYSTEM))

    # -- $print-files -------------------------------------------------------------------

    async def _print_files(self, svc: FhirService, call: OperationCall) -> dict[str, Any]:
        assert call.id is not None
        await svc.current(call.context, "Device", call.id)
        kinds = ",".join(f"{DOCUMENT_TYPE}|{kind}" for kind in ("print-stl", "print-3mf"))
        criteria = [("related", f"Device/{call.id}"), ("type", kinds)]
        found = await svc.find(svc.storage, call.context, "DocumentReference", criteria, 100)
        parts = []
        for rec in found:
            attachment = dict(fhirjson.loads(rec.data)["content"][0]["attachment"])
            attachment["url"] = f"{call.base}/{attachment['url']}"
            parts.append({"name": "file", "valueAttachment": attachment})
        return {"resourceType": "Parameters", "parameter": parts}


async def recover(svc: FhirService) -> int:
    """Fail the design Tasks a stopped process left requested or in progress; how many."""
    criteria = [("code", f"{TASK_CODE}|{tasks.DESIGN}"), ("status", tasks.ACTIVE)]
    left = await svc.find(svc.storage, SYSTEM, "Task", criteria, 1000)
    message = "The server stopped while this design ran; start $design-orthosis again"
    workflow = Workflow(svc, Options())
    for rec in left:
        await workflow._fail(fhirjson.loads(rec.data), [Issue(message, "incomplete")])
    return len(left)


def _shown(value: float | str, unit: str | None) -> str:
    return f"{value:g} {unit}" if isinstance(value, float) else str(value)


async def _once(data: bytes) -> Any:
    yield data
