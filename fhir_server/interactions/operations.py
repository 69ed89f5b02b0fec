"""FHIR extended operations: `[base]/$op`, `[base]/[type]/$op`, `[base]/[type]/[id]/$op`.

https://hl7.org/fhir/R4/operations.html -- "the parameters are passed as a Parameters
resource in the body of a POST" or, for operations that do not change state, as URL
parameters of a GET ("only primitive data types" in that form). An operation whose single
input is a resource may take that resource as the body itself. The output is a Parameters
resource, or the resource itself when the definition has one output called `return`.

Operations are registered on the service by the packages that implement them (e.g. the
terminology service), each with the levels and types it answers; the CapabilityStatement
lists them from the same registry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from fhir_server.errors import BadRequest, MethodNotAllowed, NotFound
from fhir_server.interactions.request import Request, Response
from fhir_server.parameters import HTTP_ONLY, non_negative

if TYPE_CHECKING:
    from fhir_server.context import AccessContext
    from fhir_server.interactions.routes import RouteMatch
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx

Level = str  # "system" | "type" | "instance"
Access = Literal["none", "data", "admin"]
"""What an operation touches, for the access policy: `none` no stored data (terminology,
`$validate`; an instance-level call still reads its instance through the policy), `data`
the data of its type, read through the policy (`$everything`), `admin` the server itself
(`$reindex`, `$convert-hl7v2`): only callers with every system right."""
_VALUE_PREFIX = "value"


class Params:
    """An operation's input parameters, from a query string or a Parameters body."""

    def __init__(self, parts: list[dict[str, Any]]) -> None:
        self.parts = parts

    @classmethod
    def from_query(cls, query: tuple[tuple[str, str], ...]) -> Params:
        return cls([{"name": k, "valueString": v} for k, v in query if k not in HTTP_ONLY])

    @classmethod
    def from_body(cls, body: Any) -> Params:
        if not isinstance(body, dict):
            raise BadRequest("An operation's body must be a Parameters resource or a resource")
        if body.get("resourceType") != "Parameters":
            return cls([{"name": "resource", "resource": body}])
        parts = body.get("parameter") or []
        if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
            raise BadRequest("Parameters.parameter must be a list of parameters")
        return cls(parts)

    def _named(self, name: str) -> Iterator[dict[str, Any]]:
        return (p for p in self.parts if p.get("name") == name)

    def names(self) -> set[str]:
        return {str(p.get("name")) for p in self.parts}

    def value(self, name: str) -> Any:
        """The value[x] of the first parameter `name` (None when absent)."""
        for part in self._named(name):
            for key, found in part.items():
                if key.startswith(_VALUE_PREFIX):
                    return found
        return None

    def values(self, name: str) -> list[Any]:
        out: list[Any] = []
        for part in self._named(name):
            out.extend(v for k, v in part.items() if k.startswith(_VALUE_PREFIX))
        return out

    def string(self, name: str) -> str | None:
        found = self.value(name)
        if found is None:
            return None
        if isinstance(found, bool):
            return "true" if found else "false"
        if isinstance(found, str | int | float):
            return str(found)
        raise BadRequest(f"Parameter '{name}' must be a primitive value", expression=(name,))

    def strings(self, name: str) -> list[str]:
        return [
            str(v)
            for v in self.values(name)
            if isinstance(v, str | int) and not isinstance(v, bool)
        ]

    def boolean(self, name: str, default: bool = False) -> bool:
        found = self.value(name)
        if found is None:
            return default
        if isinstance(found, bool):
            return found
        if str(found).lower() in ("true", "false"):
            return str(found).lower() == "true"
        raise BadRequest(
            f"Parameter '{name}' must be true or false, not '{found}'", expression=(name,)
        )

    def integer(self, name: str) -> int | None:
        found = self.value(name)
        return None if found is None else non_negative(name, found)

    def complex(self, name: str) -> dict[str, Any] | None:
        """A Coding / CodeableConcept value (a dict), None when absent."""
        found = self.value(name)
        if found is not None and not isinstance(found, dict):
            raise BadRequest(
                f"Parameter '{name}' must be a complex value (e.g. a Coding)", expression=(name,)
            )
        return found

    def resource(self, name: str) -> dict[str, Any] | None:
        for part in self._named(name):
            found = part.get("resource")
            if found is not None:
                if not isinstance(found, dict):
                    raise BadRequest(f"Parameter '{name}' must hold a resource", expression=(name,))
                return found
        return None


@dataclass(frozen=True, slots=True)
class OperationCall:
    """One invocation: where it was called (type, id), by whom, with which inputs."""

    name: str
    level: Level
    type: str | None
    id: str | None
    params: Params
    context: AccessContext
    method: str
    base: str = ""  # the server's base URL, for links in the result
    headers: dict[str, str] = field(default_factory=dict)  # the request's (lower-case names)

    @property
    def prefer_async(self) -> bool:
        """`Prefer: respond-async` (https://hl7.org/fhir/R4/async.html)."""
        prefer = self.headers.get("prefer") or ""
        return any(
            p.strip().lower() == "respond-async" for p in prefer.replace(";", ",").split(",")
        )


Handler = Callable[["FhirService", OperationCall], Awaitable[dict[str, Any] | bytes | Response]]
"""An operation's result: a resource, or the JSON bytes of one (e.g. a large Bundle), or a
whole `Response` when it answers with another status (e.g. 202 Accepted for an async run)."""


@dataclass(frozen=True, slots=True)
class Operation:
    """An operation the server answers, as the CapabilityStatement lists it."""

    name: str  # without the "$"
    handler: Handler
    levels: frozenset[Level]
    types: frozenset[str] = field(default_factory=frozenset)  # empty: every type
    definition: str | None = None  # canonical URL of its OperationDefinition
    affects_state: bool = False
    access: Access = "admin"  # what it touches; an operation that does not say needs the most
    deletable: bool = False  # answers DELETE too (cancelling an async job, e.g. a bulk export)

    def answers(self, level: Level, type: str | None) -> bool:
        if level not in self.levels:
            return False
        return level == "system" or not self.types or type in self.types


async def system(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    return await _invoke(svc, req, "system", None, None, m.op)


async def type_(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    return await _invoke(svc, req, "type", m.type, None, m.op)


async def instance(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    return await _invoke(svc, req, "instance", m.type, m.id, m.op)


async def _invoke(
    svc: FhirService,
    req: Request,
    level: Level,
    type: str | None,
    id: str | None,
    segment: str | None,
) -> Response:
    assert req.context and segment
    name = segment.removeprefix("$")
    operation = svc.operation(name, level, type)
    if operation is None:
        where = {"system": "the server", "type": f"{type}", "instance": f"{type} instances"}
        raise NotFound(f"Operation ${name} is not supported on {where[level]}")
    if req.method == "POST":
        params = Params.from_body(req.body) if req.body is not None else Params([])
        params.parts.extend(Params.from_query(req.query).parts)
    elif req.method == "DELETE" and not operation.deletable:
        raise MethodNotAllowed(f"${name} does not answer DELETE")
    elif operation.affects_state:
        raise MethodNotAllowed(f"${name} changes state: call it with POST")
    else:
        params = Params.from_query(req.query)
    if operation.access != "none":
        svc.policy.check(req.context, "operation" if operation.access == "data" else "admin", type)
    call = OperationCall(
        name, level, type, id, params, req.context, req.method, req.base, dict(req.headers)
    )
    result = await operation.handler(svc, call)
    return result if isinstance(result, Response) else Response(200, result)
