"""Export jobs as saved state in the database, so any server process can read them.

Each job is a JSON document under `bulk:job:<id>` (`Storage.save_state`); a cancellation
is a separate marker `bulk:cancel:<id>`, which the runner never writes, so a DELETE cannot
be undone by the runner saving its progress at the same moment. Job ids are random 128-bit
hex strings: a status URL cannot be guessed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

from fhir_server.context import AccessContext
from fhir_server.storage.base import Storage

JOB_PREFIX = "bulk:job:"
CANCEL_PREFIX = "bulk:cancel:"
Status = Literal["queued", "running", "done", "failed"]


@dataclass
class OutputFile:
    """One NDJSON file written: its kind ("output", "deleted", "error"), type and blob."""

    kind: str
    type: str
    sha256: str
    count: int
    size: int


@dataclass
class Job:
    """What was asked (fixed at kick-off) and how far the export got."""

    id: str
    request: str  # the kick-off URL
    base: str  # the FHIR base the files are served under
    transaction_time: str  # storage instant format
    types: list[str]
    owner: dict[str, Any]  # the caller's AccessContext, as JSON
    level: str = "system"  # system | patient | group
    patients: list[str] | None = None  # the cohort (group level, or `patient` parameters)
    since: str | None = None
    type_filters: dict[str, list[str]] = field(default_factory=dict)
    elements: list[str] = field(default_factory=list)
    transform: str | None = None
    status: Status = "queued"
    done_types: list[str] = field(default_factory=list)
    files: list[OutputFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # diagnostics for the error file
    exported: int = 0  # resources written so far
    attempts: int = 0  # runs started (a crash loop fails the job)
    created: float = field(default_factory=time.time)
    finished: float | None = None
    failure: str | None = None

    @property
    def key(self) -> str:
        return JOB_PREFIX + self.id

    def context(self) -> AccessContext:
        return context_from_json(self.owner)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> Job:
        found = orjson.loads(data)
        found["files"] = [OutputFile(**f) for f in found.get("files", [])]
        return cls(**found)


def new_id() -> str:
    return uuid.uuid4().hex


def context_to_json(ctx: AccessContext) -> dict[str, Any]:
    """The context as JSON: its sets (scopes, patients, organizations, purposes...) as
    sorted lists."""
    out = asdict(ctx)
    for name, value in out.items():
        if isinstance(value, frozenset):
            out[name] = sorted(value)
    return out


def context_from_json(data: dict[str, Any]) -> AccessContext:
    """The context `context_to_json` saved: every list is one of its sets."""
    values: dict[str, Any] = {
        k: frozenset(v) if isinstance(v, list) else v for k, v in data.items()
    }
    return AccessContext(**values)


class Jobs:
    """Load, save, list and cancel jobs in `storage`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def load(self, id: str) -> Job | None:
        if not id or not id.isalnum() or len(id) > 64:
            return None
        saved = await self.storage.load_state(JOB_PREFIX + id)
        return Job.from_json(saved) if saved is not None else None

    async def save(self, job: Job) -> None:
        await self.storage.save_state(job.key, job.to_json())

    async def ids(self) -> list[str]:
        return [key.removeprefix(JOB_PREFIX) for key in await self.storage.state_keys(JOB_PREFIX)]

    async def cancel(self, id: str) -> None:
        await self.storage.save_state(CANCEL_PREFIX + id, b"1")

    async def cancelled(self, id: str) -> bool:
        return await self.storage.load_state(CANCEL_PREFIX + id) is not None

    async def forget(self, id: str) -> None:
        """Remove the job and its cancellation marker (its files are removed first)."""
        await self.storage.save_state(JOB_PREFIX + id, None)
        await self.storage.save_state(CANCEL_PREFIX + id, None)
