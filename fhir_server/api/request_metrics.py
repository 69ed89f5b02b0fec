"""Counts and times every HTTP request for `/metrics`, labelled by FHIR interaction.

The interaction and resource type come from the FHIR route table (`routes.match`), so the
labels are the CapabilityStatement's codes (`read`, `search-type`, `create`...) and only the
server's own resource types; other paths are `other` (health, metrics, auth pages), paths no
route matches `unknown`.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server import metrics
from fhir_server.errors import FhirError
from fhir_server.interactions import routes


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, fhir_prefix: str) -> None:
        self.app = app
        self.prefix = fhir_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            service = getattr(getattr(scope.get("app"), "state", None), "service", None)
            types = service.resource_types if service is not None else frozenset()
            interaction, type = self._labels(scope["method"], scope["path"], types)
            metrics.requests.labels(interaction, type, str(status)).inc()
            metrics.latency.labels(interaction).observe(time.perf_counter() - started)

    def _labels(self, method: str, path: str, types: frozenset[str]) -> tuple[str, str]:
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            return "other", "none"
        try:
            found = routes.match(
                "GET" if method == "HEAD" else method, path[len(self.prefix) :], types
            )
        except FhirError:
            return "unknown", "none"
        interaction = found.route.interaction
        if found.op:
            interaction = "operation"
        return interaction, found.type or "none"
