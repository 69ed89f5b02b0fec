"""The bulk export component: its options, transforms, operations and duty."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fhir_server.bulk import kickoff, status
from fhir_server.bulk.jobs import Jobs
from fhir_server.bulk.runner import Runner
from fhir_server.bulk.scan import TransformFactory
from fhir_server.interactions.operations import Operation, OperationCall
from fhir_server.interactions.request import Response
from fhir_server.storage.blobs import BlobStore

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

SPEC = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"


@dataclass(frozen=True, slots=True)
class Options:
    file_bytes: int = 64 * 1024 * 1024  # an output file is split beyond this
    retention_seconds: float = 3600.0  # finished jobs and their files are kept this long
    poll_seconds: float = 1.0  # how often the leader looks for new jobs
    retry_after: int = 2  # seconds a polling client is asked to wait
    requires_token: bool = True  # the manifest's requiresAccessToken
    settle_seconds: float = 1.0  # after transactionTime, before the scan (see `runner`)


@dataclass
class BulkExport:
    """Bulk Data export on one service; `files` keeps the NDJSON files."""

    svc: FhirService
    files: BlobStore
    options: Options = field(default_factory=Options)
    transforms: dict[str, TransformFactory] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.jobs = Jobs(self.svc.storage)
        self.runner = Runner(self.svc, self.jobs, self.files, self.options, self.transforms)

    def add_transform(self, name: str, transform: TransformFactory) -> None:
        """Offer the transforms `transform(job_id)` makes to kick-offs as
        `_deidentify=<name>`."""
        self.transforms[name] = transform

    async def _kickoff(self, svc: FhirService, call: OperationCall) -> Response:
        job, answer = await kickoff.kickoff(svc, call, frozenset(self.transforms))
        await self.jobs.save(job)
        return answer

    async def _poll(self, svc: FhirService, call: OperationCall) -> Response:
        return await status.poll(self, svc, call)

    async def _file(self, svc: FhirService, call: OperationCall) -> Response:
        return await status.download(self, svc, call)

    def operations(self) -> list[Operation]:
        levels = frozenset({"system", "type"})
        return [
            Operation(
                "export",
                self._kickoff,
                levels,
                frozenset({"Patient"}),
                definition=SPEC + "export",
                access="data",
            ),
            Operation(
                "export",
                self._kickoff,
                frozenset({"instance"}),
                frozenset({"Group"}),
                definition=SPEC + "group-export",
                access="data",
            ),
            Operation(
                "export-poll-status",
                self._poll,
                frozenset({"system"}),
                access="none",
                deletable=True,
            ),
            Operation("export-file", self._file, frozenset({"system"}), access="none"),
        ]


def install(svc: FhirService, files: BlobStore, options: Options | None = None) -> BulkExport:
    """Register bulk export on `svc`: its operations and the leader's job runner."""
    bulk = BulkExport(svc, files, options or Options())
    for operation in bulk.operations():
        svc.add_operation(operation)
    svc.add_duty("bulk export", bulk.runner.duty)
    return bulk
