"""The whole FHIR REST surface in one table (https://hl7.org/fhir/R4/http.html).

The HTTP adapter routes every request under the base through `match`, batch and
transaction entries do the same, and the CapabilityStatement is generated from `ROUTES`:
what is listed here is what the server does, and what it says it does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_server.errors import MethodNotAllowed, NotFound
from fhir_server.interactions import (
    capabilities,
    create,
    delete,
    history,
    operations,
    patch,
    read,
    search,
    transaction,
    update,
)
from fhir_server.interactions.request import Request, Response
from fhir_server.search.limits import whole_number

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx

Handler = Callable[["FhirService", Request, "RouteMatch", "StorageTx | None"], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: tuple[str, ...]  # literal segments, or {type} {id} {vid}
    interaction: (
        str  # the CapabilityStatement code (TypeRestfulInteraction / SystemRestfulInteraction)
    )
    handler: Handler
    writes: bool = False


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: Route
    type: str | None = None
    id: str | None = None
    vid: str | None = None
    op: str | None = None  # "$name" of an operation
    target: str | None = None  # the type searched in a compartment (or "*")


def _r(
    method: str, pattern: str, interaction: str, handler: Handler, writes: bool = False
) -> Route:
    return Route(method, tuple(p for p in pattern.split("/") if p), interaction, handler, writes)


ROUTES: tuple[Route, ...] = (
    _r("GET", "metadata", "capabilities", capabilities.handle),
    _r("POST", "", "transaction", transaction.handle, writes=True),
    _r("GET", "", "search-system", search.system),
    _r("POST", "_search", "search-system", search.system),
    _r("GET", "_history", "history-system", history.system),
    _r("GET", "{type}", "search-type", search.type_),
    _r("POST", "{type}/_search", "search-type", search.type_),
    _r("POST", "{type}", "create", create.handle, writes=True),
    _r("PUT", "{type}", "update", update.conditional, writes=True),
    _r("PATCH", "{type}", "patch", patch.conditional, writes=True),
    _r("DELETE", "{type}", "delete", delete.conditional, writes=True),
    _r("GET", "{type}/_history", "history-type", history.type_),
    _r("GET", "{type}/{id}", "read", read.read),
    _r("PUT", "{type}/{id}", "update", update.handle, writes=True),
    _r("PATCH", "{type}/{id}", "patch", patch.handle, writes=True),
    _r("DELETE", "{type}/{id}", "delete", delete.handle, writes=True),
    _r("GET", "{type}/{id}/_history", "history-instance", history.instance),
    _r("GET", "{type}/{id}/_history/{vid}", "vread", read.vread),
    _r("GET", "{type}/{id}/{target}", "search-type", search.compartment),
    _r("POST", "{type}/{id}/{target}/_search", "search-type", search.compartment),
    _r("GET", "{op}", "operation", operations.system),
    _r("POST", "{op}", "operation", operations.system, writes=True),
    _r("DELETE", "{op}", "operation", operations.system, writes=True),
    _r("GET", "{type}/{op}", "operation", operations.type_),
    _r("POST", "{type}/{op}", "operation", operations.type_, writes=True),
    _r("GET", "{type}/{id}/{op}", "operation", operations.instance),
    _r("POST", "{type}/{id}/{op}", "operation", operations.instance, writes=True),
)


def match(method: str, path: str, resource_types: frozenset[str]) -> RouteMatch:
    """The route for `method path`; unknown resource type or path → 404, other verb → 405."""
    segments = tuple(s for s in path.split("/") if s)
    path_known, unknown_type = False, None
    for route in ROUTES:
        found = _match_segments(route.pattern, segments)
        if found is None:
            continue
        if found.get("type") is not None and found["type"] not in resource_types:
            unknown_type = found["type"]
            continue
        path_known = True
        if route.method == method:
            if "vid" in found:
                _check_version(found["vid"])
            return RouteMatch(
                route,
                found.get("type"),
                found.get("id"),
                found.get("vid"),
                found.get("op"),
                found.get("target"),
            )
    if path_known:
        raise MethodNotAllowed(f"{method} is not supported on '{path or '/'}'")
    if unknown_type is not None:
        raise NotFound(f"Unknown resource type '{unknown_type}'")
    raise NotFound(f"No FHIR interaction at '{path or '/'}'")


def _check_version(vid: str) -> None:
    """Versions here are whole numbers from 1 in ASCII digits that fit 64 bits (what both
    engines store); `_history/²` or `_history/١` are no version of anything: a 400."""
    whole_number("_history", vid, low=1)


def _match_segments(pattern: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, Any] | None:
    if len(pattern) != len(segments):
        return None
    found: dict[str, str] = {}
    for want, got in zip(pattern, segments, strict=True):
        if want == "{op}":
            if not got.startswith("$") or len(got) == 1:
                return None
            found["op"] = got
        elif want.startswith("{"):
            if got.startswith(("_", "$")) and want != "{vid}":
                return None
            found[want[1:-1]] = got
        elif want != got:
            return None
    return found
