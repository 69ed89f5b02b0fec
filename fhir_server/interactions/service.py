"""The FHIR service: the one in-process interaction layer every way in goes through.

`FhirService.handle(request)` routes a plain `Request` to its interaction module and
returns a `Response`. HTTP, batch/transaction entries, the CLI loader (and later HL7 v2,
CDS prefetch, operations) all call it, so validation, versioning, indexing and the access
policy apply the same way to every read and write.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, TypeVar

from fhir_server.context import (
    SYSTEM,
    AccessContext,
    AccessPolicy,
    Action,
    AllowAll,
    Disclosure,
    FullDisclosure,
    restrict_search,
)
from fhir_server.errors import (
    BadRequest,
    Conflict,
    FhirError,
    Forbidden,
    Gone,
    NotFound,
    PreconditionFailed,
    ServiceUnavailable,
    TransientStorageError,
    VersionConflict,
)
from fhir_server.interactions import binary, hierarchies, observed, routes
from fhir_server.interactions.binary import DEFAULT_INLINE_BYTES
from fhir_server.interactions.common import (
    criteria_params,
    etag,
    identity_keys,
    location,
    now_instant,
    parse_etag,
    require_filter,
    stamp,
    version_headers,
)
from fhir_server.interactions.operations import Level, Operation
from fhir_server.interactions.request import Request, Response
from fhir_server.interactions.shared import Apply, SharedState
from fhir_server.model import fhirjson
from fhir_server.model.validate import MODEL_VERDICTS, validate_resource
from fhir_server.search.extract import Indexer
from fhir_server.search.limits import DEFAULT_LIMITS, SearchLimits
from fhir_server.search.parse import parse_search
from fhir_server.search.registry import SearchRegistry, load_registry
from fhir_server.search.types.common import CodeLookup
from fhir_server.storage.base import Storage, StorageReader, StorageTx, StoredResource
from fhir_server.storage.blobs import BlobStore
from fhir_server.storage.leadership import Duty

T = TypeVar("T")
log = logging.getLogger("fhir_server")
Validator = Callable[[dict[str, Any]], None]
"""An extra check of every resource written, after structure validation (raises InvalidResource)."""
WriteListener = Callable[[Sequence[StoredResource]], None]
"""Told of the versions of its types that a committed transaction wrote."""
Transform = Callable[[dict[str, Any]], dict[str, Any]]
"""Rewrites a resource of its types on its way in (e.g. a unit conversion): it gets the
structurally valid resource and returns the one to store (a new dict when it changes
anything); raising a `FhirError` refuses the write."""
Trigger = Callable[["FhirService", StorageTx, StoredResource], Awaitable[None]]
"""Run inside the transaction that wrote a version of its types, after the write: what it
writes in `tx` (an outbox entry, a derived resource through `FhirService.store`) commits or
rolls back with that version. Raising fails the write."""
BeforeReading = Callable[[], Awaitable[object]]
"""Run before an interaction that reads resources of its type (see `before_reading`)."""
_READ_ACTIONS: dict[str, Action] = {
    "read": "read",
    "vread": "read",
    "history-instance": "history",
    "history-type": "history",
    "history-system": "history",
}  # what the access policy is asked before a hook; anything else reads by searching
_in_transaction: ContextVar[bool] = ContextVar("in_transaction", default=False)


class FhirService:
    def __init__(
        self,
        storage: Storage,
        *,
        registry: SearchRegistry | None = None,
        policy: AccessPolicy | None = None,
        base_url: str | None = None,
        default_count: int = 20,
        max_count: int = 1000,
        write_retries: int = 5,
        transient_retry_seconds: float = 15.0,
        search_limits: SearchLimits = DEFAULT_LIMITS,
        blobs: BlobStore | None = None,
        max_inline_binary_bytes: int = DEFAULT_INLINE_BYTES,
    ) -> None:
        self.storage = storage
        self.registry = registry or load_registry()
        self.indexer = Indexer(self.registry)
        self.policy: AccessPolicy = policy or AllowAll()
        self.disclosure: Disclosure = FullDisclosure()
        self.base_url = base_url.rstrip("/") if base_url else None
        self.default_count = default_count
        self.max_count = max_count
        self.search_limits = search_limits
        self.write_retries = write_retries
        self.transient_retry_seconds = transient_retry_seconds
        self.blobs: BlobStore = blobs or storage.blobs()
        self.max_inline_binary_bytes = max_inline_binary_bytes
        self._codes: CodeLookup | None = None
        self._validators: list[Validator] = []
        self._transforms: dict[str, list[Transform]] = {}
        self._operations: list[Operation] = []
        self._listeners: dict[str, list[WriteListener]] = {}
        self._triggers: dict[str, list[Trigger]] = {}
        self._before_reading: dict[str, list[BeforeReading]] = {}
        self._written: dict[int, list[StoredResource]] = {}  # per open transaction
        self._security: Callable[[str], dict[str, Any]] | None = None
        self._duties: list[tuple[str, Duty]] = []
        self.shared = SharedState(storage)

    # -- extension points: how plug-ins (terminology, HL7 v2, custom parameters) attach -----

    def add_operation(self, operation: Operation) -> None:
        """Answer `$name` at the operation's levels and types (listed in /metadata)."""
        self._operations.append(operation)

    def add_validator(self, check: Validator) -> None:
        """Run `check` on every resource written, after structure validation."""
        self._validators.append(check)

    def add_transform(self, types: Sequence[str], transform: Transform) -> None:
        """Rewrite every resource of `types` written (create, update, patch, Bundle entries)
        with `transform`: after structure validation, before the validators and the write."""
        for type in types:
            self._transforms.setdefault(type, []).append(transform)

    def describe_security(self, section: Callable[[str], dict[str, Any]]) -> None:
        """Let `section(base)` give the CapabilityStatement's `rest.security` (e.g. the
        SMART authorization server's URLs), without this layer knowing about OAuth."""
        self._security = section

    @property
    def security(self) -> Callable[[str], dict[str, Any]] | None:
        return self._security

    def use_codes(self, codes: CodeLookup) -> None:
        """Answer the token modifiers :in, :not-in, :above and :below from `codes`."""
        self._codes = codes

    @property
    def codes(self) -> CodeLookup | None:
        return self._codes

    async def watch(self, types: Sequence[str], apply: Apply) -> None:
        """`apply` to every current resource of `types` now, then to each later version of
        them (in commit order), e.g. to keep a registry in step: the versions this process
        commits at once, those other server processes commit within `shared.CHECK_EVERY`
        seconds of this process's next request (see `SharedState`)."""
        for type in types:
            async for rec in self.storage.iter_current(type):
                self.shared.loaded(rec)
                apply(rec)
        self.on_write([t for t in types if t not in self.shared.types], self.shared.on_write)
        self.shared.watch(types, apply)

    def add_duty(self, name: str, duty: Duty) -> None:
        """Run `duty` in one server process at a time, the leader (see `storage.leadership`):
        background work such as the HL7 v2 listener, job queues and deliveries."""
        self._duties.append((name, duty))

    @property
    def duties(self) -> tuple[tuple[str, Duty], ...]:
        return tuple(self._duties)

    def operation(self, name: str, level: Level, type: str | None) -> Operation | None:
        return next(
            (op for op in self._operations if op.name == name and op.answers(level, type)), None
        )

    @property
    def operations(self) -> tuple[Operation, ...]:
        return tuple(self._operations)

    def on_write(self, types: Sequence[str], listener: WriteListener) -> None:
        """Call `listener` with what each committed transaction wrote of `types`."""
        for type in types:
            self._listeners.setdefault(type, []).append(listener)

    def add_trigger(self, types: Sequence[str], trigger: Trigger) -> None:
        """Run `trigger` in the writing transaction after each version of `types` is stored
        (subscription outboxes, monitoring alerts): atomic with the write, unlike `on_write`.
        A version a trigger stores runs the triggers of its own type in turn."""
        for type in types:
            self._triggers.setdefault(type, []).append(trigger)

    def before_reading(self, type: str, hook: BeforeReading) -> None:
        """Await `hook` before each interaction that reads resources of `type`: a read,
        vread, search or history of the type, a compartment search of it, and a search
        whose `_type` names it (the audit trail stores its journaled reads first, so that
        what an auditor searches is complete). Writes do not wait for it, nor a caller
        the access policy refuses that type (the interaction then answers 403 as ever: a
        refused request cannot make the server do the hook's work), nor an interaction
        run inside a write transaction (a transaction bundle's entry, an operation run by
        one): a hook that writes would wait for the transaction that waits for it."""
        self._before_reading.setdefault(type, []).append(hook)

    async def _prepare_reading(self, req: Request, match: routes.RouteMatch) -> None:
        named = [match.type, match.target]
        named += [t.strip() for k, v in req.query if k == "_type" for t in v.split(",")]
        action = _READ_ACTIONS.get(match.route.interaction, "search")
        ctx = req.context or SYSTEM
        for type in dict.fromkeys(n for n in named if n):
            hooks = self._before_reading.get(type, ())
            if not hooks:
                continue
            try:
                self.policy.check(ctx, action, type)
            except FhirError:
                continue
            for hook in hooks:
                await hook()

    @property
    def resource_types(self) -> frozenset[str]:
        return self.registry.resource_types

    async def handle(self, req: Request, tx: StorageTx | None = None) -> Response:
        """Route and run one interaction; inside a transaction bundle `tx` is shared."""
        await self.shared.check()
        if req.context is None:
            req = req.with_(context=SYSTEM)
        if self.base_url:
            req = req.with_(base=self.base_url)
        match = routes.match(req.method, req.path, self.resource_types)
        hooks = self._before_reading
        if (
            hooks
            and tx is None
            and not match.route.writes
            and not _in_transaction.get()
            and (match.type in hooks or match.target in hooks or (match.type is None and req.query))
        ):
            await self._prepare_reading(req, match)
        return await match.route.handler(self, req, match, tx)

    async def export(self, ctx: AccessContext, type: str) -> AsyncIterator[bytes]:
        """Every current resource of `type` the caller may see, as stored JSON bytes."""
        if type not in self.resource_types:
            raise NotFound(f"Unknown resource type '{type}'")
        self.policy.check(ctx, "search", type)
        async for rec in self.storage.iter_current(type):
            if self.policy.visible(ctx, rec):
                yield self.disclosure.present(ctx, rec).data

    # -- writing -----------------------------------------------------------------------

    async def in_transaction(
        self, tx: StorageTx | None, work: Callable[[StorageTx], Awaitable[T]], *, retry: bool = True
    ) -> T:
        """Run `work` in `tx`, or in a fresh transaction: retried (with back-off) on a lost
        version race up to `write_retries` times, then 409 (412 when `retry` is False: the
        caller's If-Match named a version another writer replaced); retried on a transient
        storage error for `transient_retry_seconds`, then 503."""
        if tx is not None:
            return await work(tx)
        deadline = time.monotonic() + self.transient_retry_seconds
        races = 0
        while True:
            try:
                return await self._attempt(work)
            except VersionConflict as race:
                races += 1
                if not retry:
                    raise PreconditionFailed(
                        f"{race.type}/{race.id} was changed concurrently: the If-Match "
                        "version is no longer current"
                    ) from race
                if races >= self.write_retries:
                    raise Conflict(
                        f"{race.type}/{race.id} was changed concurrently; retry the request"
                    ) from race
                await _back_off(races, 0.1)
            except TransientStorageError as error:
                races += 1
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(
                        "The database is temporarily unavailable (e.g. electing a new "
                        "primary); nothing was written: retry the request",
                        headers={"Retry-After": "5"},
                    ) from error
                await _back_off(races, 1.0)

    async def _attempt(self, work: Callable[[StorageTx], Awaitable[T]]) -> T:
        async with self.storage.transaction() as fresh:
            inside = _in_transaction.set(True)  # see `before_reading`
            try:
                result = await work(fresh)
            finally:
                _in_transaction.reset(inside)
                written = self._written.pop(id(fresh), None)
        self._notify(written)
        if written:
            await self.shared.changed(written)
        return result

    def _notify(self, written: list[StoredResource] | None) -> None:
        """Tell listeners what committed; a failing listener cannot undo or fail the write."""
        for rec in written or ():
            for listener in self._listeners.get(rec.type, ()):
                try:
                    listener((rec,))
                except Exception:
                    log.exception("write listener failed on %s/%s", rec.type, rec.id)

    async def store(
        self,
        tx: StorageTx,
        type: str,
        id: str,
        resource: dict[str, Any] | None,
        *,
        current: StoredResource | None,
        method: str,
    ) -> StoredResource:
        """Write the next version of Type/id (a deletion when `resource` is None)."""
        version = (current.version if current else 0) + 1
        now = now_instant(current.last_updated if current else None)
        if resource is None:
            rec = StoredResource(type, id, version, now, True, b"", "DELETE")
            await tx.write(rec, (), expected_version=version - 1)
            return await self._written_in(tx, rec)
        if current is None or current.deleted:
            for key in identity_keys(type, resource):
                await tx.lock(key)
        body = stamp(resource, id, version, now)
        rec = StoredResource(type, id, version, now, False, fhirjson.dumps(body), method)  # type: ignore[arg-type]
        await tx.write(rec, self.indexer.extract(body), expected_version=version - 1)
        return await self._written_in(tx, rec)

    async def _written_in(self, tx: StorageTx, rec: StoredResource) -> StoredResource:
        for trigger in self._triggers.get(rec.type, ()):
            await trigger(self, tx, rec)
        return self._track(tx, rec)

    def _track(self, tx: StorageTx, rec: StoredResource) -> StoredResource:
        observed.note((rec,))
        if rec.type in self._listeners:
            self._written.setdefault(id(tx), []).append(rec)
        return rec

    def resource_from_body(self, req: Request, type: str) -> dict[str, Any]:
        """The request body as a validated resource of `type`, or a 400 naming what is wrong."""
        body = req.body
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a FHIR resource (a JSON object)")
        if "resourceType" not in body:
            raise BadRequest(
                f"The body has no 'resourceType'; expected '{type}'", expression=("resourceType",)
            )
        if body.get("resourceType") != type:
            raise BadRequest(
                f"Resource type '{body.get('resourceType')}' in the body does not match "
                f"'{type}' in the URL",
                expression=("resourceType",),
            )
        if type == "Binary" and req.context is not SYSTEM:  # internal callers write blobs too
            binary.check_claim(body, req.blob)
        return self.validate(body)

    def validate(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Structure validation, then the transforms of its type (`add_transform`), then
        every registered validator (e.g. required bindings)."""
        valid = validate_resource(resource, verdicts=MODEL_VERDICTS.get())
        for transform in self._transforms.get(str(valid.get("resourceType")), ()):
            valid = transform(valid)
        for check in self._validators:
            check(valid)
        return valid

    # -- reading -----------------------------------------------------------------------

    async def current(
        self,
        ctx: AccessContext,
        type: str,
        id: str,
        *,
        version: int | None = None,
        db: StorageReader | None = None,
    ) -> StoredResource:
        """The current version of Type/id (with `version`: that version) as `ctx` may see it.

        The one rule for "this resource, now": NotFound when it never existed, Gone (with
        its ETag) when that version is a deletion, Forbidden when the access policy hides it.
        `db` is the transaction to read in (a Bundle's entries see its earlier writes).
        """
        if version is None:
            what = f"{type}/{id}"
            rec = await (db or self.storage).read(type, id)
        else:
            what = f"{type}/{id}/_history/{version}"
            rec = await self.storage.vread(type, id, version)
        if rec is None:
            raise NotFound(f"{what} is not known")
        if rec.deleted:
            raise Gone(f"{what} was deleted", headers={"ETag": etag(rec)})
        if not self.policy.visible(ctx, rec):
            raise Forbidden(f"{what} is not visible to {ctx.subject}")
        observed.note((rec,))
        return rec

    async def find(
        self,
        db: StorageReader,
        ctx: AccessContext,
        type: str,
        criteria: str | Sequence[tuple[str, str]],
        limit: int = 2,
    ) -> list[StoredResource]:
        """Resources of `type` matching a conditional interaction's search criteria."""
        params = criteria_params(criteria)
        parsed = parse_search(self.registry, (type,), params, strict=True, codes=self.codes)
        require_filter(type, params, parsed.query)
        query = await hierarchies.resolve(self, ctx, db, parsed.query)
        query = restrict_search(self.policy, ctx, query)
        page = await db.search(replace(query, count=limit, offset=0, total="none"))
        return [rec for rec in page.resources if self.policy.visible(ctx, rec)]

    def check_if_match(self, req: Request, current: StoredResource | None) -> None:
        """`If-Match: W/"n"` must name the current version (412 otherwise)."""
        wanted = req.header("if-match")
        if wanted is None:
            return
        version = parse_etag(wanted)
        if current is None or current.deleted or current.version != version:
            have = "does not exist" if current is None else f"is at version {current.version}"
            raise PreconditionFailed(f"If-Match {wanted} failed: the resource {have}")

    # -- responses ---------------------------------------------------------------------

    def resource_response(self, req: Request, rec: StoredResource, status: int) -> Response:
        """A response carrying a stored version, honouring `Prefer: return=`."""
        headers = version_headers(req, rec)
        headers["Location"] = location(req, rec)
        prefer = req.prefer_return
        if prefer == "minimal":
            return Response(status, None, headers)
        if prefer == "OperationOutcome":
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "information",
                        "code": "informational",
                        "diagnostics": f"{rec.type}/{rec.id} version {rec.version} stored",
                    }
                ],
            }
            return Response(status, outcome, headers)
        shown = rec if req.context is None else self.disclosure.present(req.context, rec)
        return Response(status, shown.data, headers)


async def _back_off(attempt: int, cap: float) -> None:
    """Sleep a jittered, exponentially growing while (at most `cap` seconds) before retrying,
    so that writers who lost a race, or wait out a failover, do not retry in lockstep."""
    await asyncio.sleep(random.uniform(0, min(cap, 0.005 * 2**attempt)))
