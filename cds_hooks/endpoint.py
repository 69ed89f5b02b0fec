"""The CDS Hooks endpoints without a web framework: https://cds-hooks.hl7.org/2.0/

    GET  {base}/cds-services                 discovery       `CdsHooks.discovery`
    POST {base}/cds-services/{id}            a hook call     `CdsHooks.call`
    POST {base}/cds-services/{id}/feedback   card outcomes   `CdsHooks.feedback`

The HTTP adapter (`fhir_server.api.cds_routes`) authenticates the client first
(`CdsHooks.authenticate`, with the exact URL called as the JWT's audience) and hands in the
body. Failures are `FhirError`s the adapter renders as OperationOutcome: 400 for a bad
request, 401 for a refused JWT, 404 for an unknown service, 412 when prefetch data cannot
be had, and 500 (logged, no details sent) when a service fails or answers what the spec
forbids: "CDS Services MAY return other HTTP statuses, specifically 4xx and 5xx".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import httpx

from cds_hooks.client_auth import CdsClientVerifier
from cds_hooks.feedback import parse_feedback
from cds_hooks.hook_request import HookRequest, parse_hook_request
from cds_hooks.prefetch import Fetcher, OwnServer, RemoteServer, Unavailable, resolve
from cds_hooks.registry import CdsServices
from cds_hooks.response_check import problems
from cds_hooks.service import JSON, CdsService, HookCall
from cds_hooks.store import CdsClient, CdsStore
from fhir_server.context import AccessContext
from fhir_server.errors import FhirError, NotFound, PreconditionFailed
from fhir_server.interactions.service import FhirService

log = logging.getLogger("fhir_server.cds_hooks")
IN_THREAD_BYTES = 256 * 1024  # a larger call is parsed and evaluated on a worker thread

Authorize = Callable[[str | None], Awaitable[AccessContext]]


@dataclass(frozen=True, slots=True)
class OwnFhir:
    """This server's FHIR API as a prefetch source: its base URL and how a
    `fhirAuthorization` token becomes an access context (the server's own token check)."""

    service: FhirService
    base: str
    authorize: Authorize


class ServiceFailed(FhirError):
    """A service raised, or answered what the spec forbids: a server fault (500)."""

    status, code = 500, "exception"


class CdsHooks:
    """The services, the store and the client check, behind the three endpoints."""

    def __init__(
        self,
        services: CdsServices,
        store: CdsStore,
        *,
        verifier: CdsClientVerifier | None,
        http: httpx.AsyncClient,
        smart_origins: Collection[str] = (),
    ) -> None:
        self.services = services
        self.store = store
        self.verifier = verifier
        self.http = http
        self.smart_origins = frozenset(smart_origins)

    async def authenticate(self, authorization: str | None, url: str) -> CdsClient | None:
        """The client the request's JWT proves (None with client authentication off)."""
        if self.verifier is None:
            return None
        return await self.verifier.verify(authorization, url)

    def discovery(self) -> JSON:
        return self.services.discovery()

    def service(self, service_id: str) -> CdsService:
        found = self.services.get(service_id)
        if found is None:
            raise NotFound(f"No CDS service has the id {service_id!r}")
        return found

    async def call(
        self, service_id: str, body: bytes, *, client: CdsClient | None, own: OwnFhir
    ) -> JSON:
        service = self.service(service_id)
        definition = service.definition
        large = len(body) > IN_THREAD_BYTES  # parsed and evaluated beside the event loop
        if large:
            request = await asyncio.to_thread(parse_hook_request, body, definition)
        else:
            request = parse_hook_request(body, definition)

        async def fetcher() -> Fetcher:
            return await self._fetcher(request, client, own)

        try:
            prefetch = await resolve(definition.prefetch, request, fetcher)
        except Unavailable as error:
            raise PreconditionFailed(f"Prefetch data cannot be had: {error}") from None
        call = HookCall(
            hook=request.hook,
            hook_instance=request.hook_instance,
            context=request.context,
            prefetch=prefetch,
            fhir_server=request.fhir_server,
        )
        if large:
            return await asyncio.to_thread(self._evaluate, service, call)
        return self._evaluate(service, call)

    def _evaluate(self, service: CdsService, call: HookCall) -> JSON:
        service_id = service.definition.id
        try:
            answer = service.evaluate(call).to_json()
        except Exception:
            log.exception(
                "the CDS service %s failed (hookInstance %s)", service_id, call.hook_instance
            )
            raise ServiceFailed(
                f"The CDS service {service_id} failed; the error was logged"
            ) from None
        found = problems(answer, self.smart_origins)
        if found:
            log.error("the CDS service %s answered against the spec: %s", service_id, found)
            raise ServiceFailed(f"The CDS service {service_id} failed; the error was logged")
        return answer

    async def _fetcher(
        self, request: HookRequest, client: CdsClient | None, own: OwnFhir
    ) -> Fetcher:
        """Where missing prefetch data comes from, or `Unavailable` when from nowhere."""
        server = request.fhir_server
        if server is None:
            raise Unavailable("it was not all sent and no fhirServer was given to fetch it from")
        if server == own.base.rstrip("/"):
            try:
                context = await own.authorize(request.access_token)
            except FhirError as error:
                raise Unavailable(
                    f"fhirAuthorization is refused here ({error.diagnostics})"
                ) from None
            return OwnServer(own.service, own.base, context)
        if client is None or server not in client.fhir_servers:
            raise Unavailable(f"the fhirServer {server} is not one registered for this client")
        return RemoteServer(self.http, server, request.access_token)

    async def feedback(self, service_id: str, body: bytes, client: CdsClient | None) -> None:
        self.service(service_id)
        items = parse_feedback(body)
        iss = client.iss if client else None
        await asyncio.to_thread(self.store.add_feedback, service_id, iss, items)
