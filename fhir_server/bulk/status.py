"""Status and files: `$export-poll-status?_jobId=` (GET, DELETE) and `$export-file`.

https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-status-request -- in progress: "HTTP
status of 202 Accepted", "optionally an X-Progress header"; done: 200 with the manifest
(`transactionTime`, `request`, `requiresAccessToken`, `output`, `error`, and `deleted` for
`_since` exports); failed: an error status with an OperationOutcome; a DELETE "SHALL
return a 202 Accepted" and the server "SHOULD delete the files". Only the client that
started a job (the same client_id, or the same subject without one) may see it, and only
while its token still reads every type the job exports.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from fhir_server.bulk.jobs import Job
from fhir_server.context import AccessContext
from fhir_server.errors import BadRequest, Forbidden, Issue, NotFound, operation_outcome
from fhir_server.interactions.binary import RawContent
from fhir_server.interactions.request import Response

if TYPE_CHECKING:
    from fhir_server.bulk.plugin import BulkExport
    from fhir_server.interactions.operations import OperationCall
    from fhir_server.interactions.service import FhirService

NDJSON = "application/fhir+ndjson"


def _identity(ctx: AccessContext | dict[str, Any]) -> str:
    if isinstance(ctx, dict):
        client, subject = ctx.get("client_id"), ctx.get("subject")
    else:
        client, subject = ctx.client_id, ctx.subject
    return f"client:{client}" if client else f"subject:{subject}"


async def owned_job(bulk: BulkExport, svc: FhirService, call: OperationCall) -> Job:
    """The job `_jobId` names, if the caller started it (404 unknown or expired, 403 other)."""
    id = call.params.string("_jobId") or ""
    job = await bulk.jobs.load(id)
    if job is None or await bulk.jobs.cancelled(id) or bulk.runner.expired(job):
        raise NotFound(f"No export job {id[:64]} (unknown, expired or cancelled)")
    ctx = call.context
    if not ctx.system:
        if not hmac.compare_digest(_identity(ctx).encode(), _identity(job.owner).encode()):
            raise Forbidden("This export job was started by another client")
        for type in job.types:
            svc.policy.check(ctx, "search", type)
    return job


async def poll(bulk: BulkExport, svc: FhirService, call: OperationCall) -> Response:
    job = await owned_job(bulk, svc, call)
    if call.method == "DELETE":
        await bulk.jobs.cancel(job.id)
        if job.status != "running":  # a running job is removed by the runner
            await bulk.runner.discard(job)
        outcome = operation_outcome(
            [Issue("The export job was cancelled", "informational", "information")]
        )
        return Response(202, outcome)
    if job.status in ("queued", "running"):
        progress = f"{len(job.done_types)} of {len(job.types)} types, {job.exported} resources"
        retry = str(bulk.options.retry_after)
        return Response(202, None, {"X-Progress": progress, "Retry-After": retry})
    if job.status == "failed":
        issue = Issue(f"The export job failed: {job.failure}", "exception")
        return Response(500, operation_outcome([issue]))
    expires = datetime.fromtimestamp((job.finished or 0) + bulk.options.retention_seconds, tz=UTC)
    return Response(200, manifest(bulk, job), {"Expires": format_datetime(expires, usegmt=True)})


def manifest(bulk: BulkExport, job: Job) -> dict[str, Any]:
    sections: dict[str, list[dict[str, Any]]] = {"output": [], "deleted": [], "error": []}
    for n, file in enumerate(job.files):
        url = f"{job.base}/$export-file?_jobId={job.id}&file={n}"
        sections[file.kind].append({"type": file.type, "url": url, "count": file.count})
    body: dict[str, Any] = {
        "transactionTime": job.transaction_time,
        "request": job.request,
        "requiresAccessToken": bulk.options.requires_token,
        "output": sections["output"],
        "error": sections["error"],
    }
    if job.since is not None:
        body["deleted"] = sections["deleted"]
    return body


async def download(bulk: BulkExport, svc: FhirService, call: OperationCall) -> Response:
    job = await owned_job(bulk, svc, call)
    number = call.params.string("file") or ""
    if not number.isdigit():
        raise BadRequest("file must be the number of a file of the manifest")
    if job.status != "done" or int(number) >= len(job.files):
        raise NotFound(f"Export job {job.id} has no file {number}")
    file = job.files[int(number)]
    if not await bulk.files.exists(file.sha256):
        raise NotFound(f"File {number} of export job {job.id} is no longer kept")
    raw = RawContent(NDJSON, file.size, bulk.files.read(file.sha256))
    return Response(200, None, {"Cache-Control": "no-store"}, raw=raw)
