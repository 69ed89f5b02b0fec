"""`DeviceRequest/[id]/$design-orthosis` and `Device/[id]/$print-files`.

$design-orthosis (POST) designs the insoles a checked order prescribes, from the foot scans
indexed by DocumentReferences whose `context.related` names the DeviceRequest, or else from
the four foot measurement Observations in `DeviceRequest.supportingInfo`. A `Task` records
each run (`focus` the DeviceRequest, `for` the patient), moving requested -> in-progress ->
completed or failed, with `businessStatus` naming the step (queued, designing, issuing,
issued, refused, error). Synchronously it answers the completed Task; with
`Prefer: respond-async` (https://hl7.org/fhir/R4/async.html) it answers 202 Accepted at once
with `Content-Location` naming the Task to poll. The design is CPU-bound: it runs on a
worker process (one design at a time per server process), never on the event loop.

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
import base64
import binascii
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, cast

from adapters.orthotics import records
from adapters.orthotics.codes import MEASUREMENT_FIELD, PARAMETERS
from adapters.orthotics.model import (
    Design,
    DesignRefused,
    FootMeasurements,
    Gate,
    MdrStatement,
    Prescription,
    PrescriptionInvalid,
    PrintLimits,
    ScanRejected,
)
from adapters.orthotics.order import Order, measurement, prescription, read_order
from adapters.orthotics.parameters import PROCESSES, Side
from adapters.orthotics.records import DOCUMENT_TYPE, SCAN_DOCUMENTS, TASK_CODE, File, Issued
from fhir_server.context import SYSTEM, AccessContext
from fhir_server.errors import FhirError, Issue, Unprocessable
from fhir_server.interactions.binary import blob_of
from fhir_server.interactions.operations import Operation, OperationCall
from fhir_server.interactions.request import Request, Response
from fhir_server.interactions.service import FhirService
from fhir_server.model import fhirjson

T = TypeVar("T")
log = logging.getLogger("fhir_server.orthotics")
DESIGN = "design-orthosis"
WRITES = ("Task", "Device", "DeviceDefinition", "Binary", "DocumentReference")
ACTIVE = "requested,in-progress"


@dataclass(frozen=True, slots=True)
class Options:
    """What a deployment sets: who makes the devices, and what its printer takes; `worker`
    is where the CPU-bound design runs: a worker process (the server's interpreter lock
    stays free) or a thread of the server (tests that stand in for the geometry)."""

    manufacturer: str = "Custom orthosis manufacturer (set FHIR_ORTHOTICS_MANUFACTURER)"
    limits: PrintLimits = field(default_factory=PrintLimits)
    worker: Literal["process", "thread"] = "process"


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


class Workflow:
    """The two operations over one service, and the design jobs running in this process."""

    def __init__(self, svc: FhirService, options: Options) -> None:
        self.svc = svc
        self.options = options
        self._jobs: set[asyncio.Task[Any]] = set()
        self._slot: asyncio.Semaphore | None = None
        self._pool: ProcessPoolExecutor | None = None

    def operations(self) -> list[Operation]:
        design = Operation(
            DESIGN,
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
        inputs = await self._inputs(call.context, call.id)
        task = _task(call.id, inputs)
        await self._put(task)
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
            task = await self._step(task, "in-progress", "designing")
            design = await self._designed(inputs)
            task = await self._step(task, "in-progress", "issuing")
            issued = await self._issue(inputs, design)
            task = _completed(task, issued, design)
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

    async def _designed(self, inputs: Inputs) -> Design:
        """The design, made in the worker (one at a time), or a 422 naming why not."""
        if self._slot is None:
            self._slot = asyncio.Semaphore(1)
        async with self._slot:
            kind, value = await self._in_worker(_design_outcome, inputs, self.options.limits)
        if kind == "rejected":
            raise _scan_refusal(*value)
        if kind == "refused":
            raise _gate_refusal(value)
        if kind == "invalid":
            raise Unprocessable("The prescription cannot be built: " + "; ".join(value))
        return cast(Design, value)

    async def _in_worker(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` off the event loop: in the worker process, or a thread."""
        if self.options.worker == "thread":
            return await asyncio.to_thread(function, *args)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_follow_parent,
                initargs=(os.getpid(),),
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        except BrokenProcessPool:
            self._pool = None  # the worker died (e.g. out of memory): the next run starts one
            raise

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
        pdf = await self._in_worker(_statement_pdf, self._statement(inputs, issued))
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

    # -- inputs -------------------------------------------------------------------------

    async def _inputs(self, ctx: AccessContext, request_id: str) -> Inputs:
        rec = await self.svc.current(ctx, "DeviceRequest", request_id)
        request = fhirjson.loads(rec.data)
        order = read_order(request)
        inputs = Inputs(request, order, prescription(order))
        scans = await self._scans(ctx, request_id, inputs.rx.sides)
        if scans:
            sides, content_type, sources = scans
            return replace(inputs, scans=sides, content_type=content_type, sources=sources)
        measured = await self._measurements(ctx, request)
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

    async def _scans(
        self, ctx: AccessContext, request_id: str, sides: tuple[Side, ...]
    ) -> tuple[dict[Side, bytes], str, tuple[str, ...]] | None:
        criteria = [("related", f"DeviceRequest/{request_id}")]
        found = await self.svc.find(self.svc.storage, ctx, "DocumentReference", criteria, 50)
        scans: dict[Side, bytes] = {}
        content_type, sources = "", []
        for rec in found:
            document = fhirjson.loads(rec.data)
            kind = _document_kind(document)
            if kind is not None and kind not in SCAN_DOCUMENTS:
                continue  # an output of an earlier design
            side: Side = sides[0]
            if kind in ("foot-scan-left", "foot-scan-right"):
                side = "left" if kind == "foot-scan-left" else "right"
            attachment = ((document.get("content") or [{}])[0]).get("attachment") or {}
            data, stored_type = await self._attachment(ctx, attachment)
            scans[side] = data
            content_type = attachment.get("contentType") or stored_type
            sources.append(f"DocumentReference/{rec.id}")
        return (scans, content_type, tuple(sources)) if scans else None

    async def _attachment(
        self, ctx: AccessContext, attachment: dict[str, Any]
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
        rec = await self.svc.current(ctx, "Binary", binary_id)
        binary = fhirjson.loads(rec.data)
        ref = blob_of(binary)
        if ref is None:
            try:
                return base64.b64decode(binary.get("data") or ""), binary.get("contentType", "")
            except (binascii.Error, ValueError):
                raise Unprocessable(f"Binary/{binary_id} holds no base64 data") from None
        chunks = [chunk async for chunk in self.svc.blobs.read(ref.sha256)]
        return b"".join(chunks), str(binary.get("contentType") or "")

    async def _measurements(
        self, ctx: AccessContext, request: dict[str, Any]
    ) -> tuple[FootMeasurements, tuple[str, ...]] | None:
        values: dict[str, float] = {}
        sources: list[str] = []
        for info in request.get("supportingInfo") or ():
            reference = str(info.get("reference") or "")
            if not reference.startswith("Observation/"):
                continue
            rec = await self.svc.current(ctx, "Observation", reference.split("/", 1)[1])
            found = measurement(fhirjson.loads(rec.data))
            if found is not None:
                values[MEASUREMENT_FIELD[found[0]]] = found[1]
                sources.append(reference)
        if set(values) != set(MEASUREMENT_FIELD.values()):
            return None
        return FootMeasurements(**values), tuple(sources)

    # -- the Task -----------------------------------------------------------------------

    async def _step(self, task: dict[str, Any], status: str, step: str) -> dict[str, Any]:
        task = {**task, "status": status, "businessStatus": {"text": step}}
        task["lastModified"] = _now()
        await self._put(task)
        return task

    async def _fail(self, task: dict[str, Any], issues: list[Issue], step: str = "error") -> None:
        failed = {**task, "status": "failed", "businessStatus": {"text": step}}
        failed["lastModified"] = _now()
        failed["statusReason"] = {"text": "; ".join(i.diagnostics for i in issues)[:4000]}
        failed["output"] = [
            {"type": {"text": "issue"}, "valueString": issue.diagnostics} for issue in issues
        ]
        try:
            await self._put(failed)
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
    criteria = [("code", f"{TASK_CODE}|{DESIGN}"), ("status", ACTIVE)]
    left = await svc.find(svc.storage, SYSTEM, "Task", criteria, 1000)
    message = "The server stopped while this design ran; start $design-orthosis again"
    workflow = Workflow(svc, Options())
    for rec in left:
        await workflow._fail(fhirjson.loads(rec.data), [Issue(message, "incomplete")])
    return len(left)


def _follow_parent(parent: int) -> None:
    """In the worker: exit when the server process is gone (killed, crashed), which the pool
    itself does not notice, so no orphan keeps designing or holding memory."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def _design_outcome(inputs: Inputs, limits: PrintLimits) -> tuple[str, Any]:
    """In the worker: the design, or why not, as values that cross a process boundary (the
    geometry's exceptions do not pickle with their fields)."""
    try:
        return "design", _design(inputs, limits)
    except ScanRejected as rejected:
        return "rejected", (rejected.reason, rejected.details)
    except DesignRefused as refused:
        return "refused", refused.gates
    except PrescriptionInvalid as invalid:
        return "invalid", invalid.problems


def _design(inputs: Inputs, limits: PrintLimits) -> Design:
    """The geometry (trimesh, manifold3d) is imported on first use, in the worker, so a
    server process that designs nothing does not load it."""
    from adapters.orthotics import design

    if inputs.scans:
        return design.design_from_scan(inputs.scans, inputs.content_type, inputs.rx, limits)
    assert inputs.measurements is not None
    return design.design_from_measurements(inputs.measurements, inputs.rx, limits)


def _statement_pdf(statement: MdrStatement) -> bytes:
    from adapters.orthotics import design

    return design.statement_pdf(statement)


def _scan_refusal(reason: str, details: dict[str, Any]) -> Unprocessable:
    shown = "; ".join(f"{k}: {v}" for k, v in details.items())
    message = f"The scan cannot be used: {reason}" + (f" ({shown})" if shown else "")
    return Unprocessable(message, issues=[Issue(message, "processing")])


def _gate_refusal(gates: tuple[Gate, ...]) -> Unprocessable:
    issues = [
        Issue(
            f"Printability gate '{g.name}' failed: measured {g.measured} {g.unit}, "
            f"limit {g.limit} {g.unit}",
            "processing",
        )
        for g in gates
    ]
    return Unprocessable("The design failed printability gates; nothing was issued", issues=issues)


def _task(request_id: str, inputs: Inputs) -> dict[str, Any]:
    now = _now()
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": uuid.uuid4().hex,
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE, "code": DESIGN}]},
        "focus": {"reference": f"DeviceRequest/{request_id}"},
        "authoredOn": now,
        "lastModified": now,
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


def _completed(task: dict[str, Any], issued: Issued, design: Design) -> dict[str, Any]:
    done = {**task, "status": "completed", "businessStatus": {"text": "issued"}}
    done["lastModified"] = _now()
    done["output"] = records.outputs(issued.files, issued.devices)
    done["output"] += [
        {"type": {"text": "repair"}, "valueString": repair} for repair in design.repairs
    ]
    return done


def _shown(value: float | str, unit: str | None) -> str:
    return f"{value:g} {unit}" if isinstance(value, float) else str(value)


def _document_kind(document: dict[str, Any]) -> str | None:
    for coding in (document.get("type") or {}).get("coding") or ():
        if coding.get("system") == DOCUMENT_TYPE:
            return str(coding.get("code"))
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _once(data: bytes) -> Any:
    yield data
