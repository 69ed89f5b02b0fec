"""Counts and times every HTTP request for `/metrics`, labelled by FHIR interaction.

The interaction and resource type come from the FHIR route table (`routes.match`), so the
labels are the CapabilityStatement's codes (`read`, `search-type`, `create`...) and only the
server's own resource types; other paths are `other` (health, metrics, auth pages), paths no
route matches `unknown`.

Cheap on the hot path: the route of a path's shape (its ids replaced) is looked up once and
remembered, and each label set's metric children are kept, so a request costs a split, two
dictionary look-ups and two updates.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server import metrics
from fhir_server.errors import FhirError
from fhir_server.interactions import routes

_KEYWORDS = frozenset({"metadata", "_history", "_search"})


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, fhir_prefix: str) -> None:
        self.app = app
        self.counter = RequestCounter(fhir_prefix)

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
            self.counter.record(scope, status, started)


class RequestCounter:
    """The request metrics of one process's requests, labelled as the module says."""

    def __init__(self, fhir_prefix: str) -> None:
        self.prefix = fhir_prefix
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def record(self, scope: Scope, status: int, started: float) -> None:
        """Count the request and its time since `started` (`time.perf_counter()`)."""
        key = (*self._labels(scope), status)
        children = self._children.get(key)
        if children is None:
            interaction, type, code = key
            children = (
                metrics.requests.labels(interaction, type, str(code)),
                metrics.latency.labels(interaction),
            )
            if len(self._children) < 10_000:  # label sets are bounded; stay so
                self._children[key] = children
        children[0].inc()
        children[1].observe(time.perf_counter() - started)

    def _labels(self, scope: Scope) -> tuple[str, str]:
        path: str = scope["path"]
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            return "other", "none"
        service = getattr(getattr(scope.get("app"), "state", None), "service", None)
        types: frozenset[str] = service.resource_types if service is not None else frozenset()
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        return _route_labels(method, shape(path[len(self.prefix) :], types), types)


def shape(path: str, types: frozenset[str]) -> tuple[str, ...]:
    """The path's segments with ids made anonymous: types, keywords and `$op` kept (an
    unknown type becomes `?`), every other segment `*`."""
    parts = []
    for part in path.split("/"):
        if not part:
            continue
        if part in types or part in _KEYWORDS:
            parts.append(part)
        elif part.startswith("$"):
            parts.append("$op")
        else:
            parts.append("*" if parts else "?")
    return tuple(parts)


@lru_cache(maxsize=1024)
def _route_labels(method: str, shape: tuple[str, ...], types: frozenset[str]) -> tuple[str, str]:
    path = "/".join({"*": "1", "?": "UnknownType"}.get(p, p) for p in shape)
    try:
        found = routes.match(method, path, types)
    except FhirError:
        return "unknown", "none"
    interaction = "operation" if found.op else found.route.interaction
    return interaction, found.type or "none"
