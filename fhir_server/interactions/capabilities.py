"""FHIR capabilities interaction: `GET [base]/metadata`.

https://hl7.org/fhir/R4/http.html#capabilities -- the CapabilityStatement is generated
from the route table the server actually uses (`routes.ROUTES`), the search registry and
the registered operations, so what it claims cannot drift from what the server does: the
cached statement is keyed on the registry's generation and the operations.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from fhir_server.interactions.common import now_instant
from fhir_server.interactions.request import Request, Response

if TYPE_CHECKING:
    from fhir_server.interactions.operations import Operation
    from fhir_server.interactions.routes import RouteMatch
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx

FHIR_VERSION = "4.0.1"
SERVER_DEFINITIONS = "urn:fhir-server:OperationDefinition:"  # operations without an HL7 one
SOFTWARE = {"name": "fhir-server", "version": "0.1.0"}
_TYPE_LEVEL = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
_SEARCHABLE_TYPES = ("number", "date", "string", "token", "reference", "quantity", "uri")


async def handle(svc: FhirService, req: Request, m: RouteMatch, tx: StorageTx | None) -> Response:
    return Response(200, capability_statement(svc, req.base))


def capability_statement(svc: FhirService, base: str) -> dict[str, Any]:
    from fhir_server.interactions.routes import ROUTES

    interactions = frozenset(r.interaction for r in ROUTES)
    registry = svc.registry
    statement = dict(
        _static_part(svc, (id(registry), registry.generation), svc.operations, interactions)
    )
    statement["implementation"] = {"description": "FHIR R4 server", "url": base}
    if svc.security is not None:
        statement["rest"] = [{**statement["rest"][0], "security": svc.security(base)}]
    return statement


@lru_cache(maxsize=4)
def _static_part(
    svc: FhirService,
    registry: tuple[int, int],
    operations: tuple[Operation, ...],
    interactions: frozenset[str],
) -> dict[str, Any]:
    """Everything but the base URL; rebuilt when the registry changes (a custom
    SearchParameter stored or retired: its `generation` grows) or an operation is added."""
    system = [
        {"code": code}
        for code in ("transaction", "batch", "search-system", "history-system")
        if code in interactions or (code == "batch" and "transaction" in interactions)
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now_instant()[:10],  # when this server started answering
        "publisher": "fhir-server",
        "kind": "instance",
        "software": SOFTWARE,
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "xml", "application/fhir+json", "application/fhir+xml"],
        "patchFormat": [
            "application/json-patch+json",
            "application/fhir+json",
            "application/fhir+xml",
        ],
        "rest": [
            {
                "mode": "server",
                "resource": [_resource(svc, t, interactions) for t in sorted(svc.resource_types)],
                "interaction": system,
                "searchParam": _common_params(),
                **_operations(svc, "system", None),
            }
        ],
    }


def _resource(svc: FhirService, type: str, interactions: frozenset[str]) -> dict[str, Any]:
    params = svc.registry.params_for(type)
    return {
        "type": type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{type}",
        "interaction": [{"code": c} for c in _TYPE_LEVEL if c in interactions],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "full-support",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal", "logical"],
        "searchInclude": [
            "*",
            f"{type}:*",
            *(f"{type}:{code}" for code, p in sorted(params.items()) if p.type == "reference"),
        ],
        "searchRevInclude": _revincludes(svc, type),
        "searchParam": [
            {"name": code, "definition": p.url, "type": p.type}
            for code, p in sorted(params.items())
            if p.type in _SEARCHABLE_TYPES and not code.startswith("_")
        ],
        **_operations(svc, "type", type),
    }


def _revincludes(svc: FhirService, target: str) -> list[str]:
    """`Source:param` for every reference parameter that can point at a `target`."""
    registry = svc.registry
    return [
        f"{source}:{code}"
        for source in sorted(svc.resource_types)
        for code, p in sorted(registry.params_for(source).items())
        if p.type == "reference" and target in registry.targets(p, source)
    ]


def _operations(svc: FhirService, level: str, type: str | None) -> dict[str, Any]:
    """`operation` entries for what the service answers at this level (type: or instance)."""
    found = [
        op
        for op in svc.operations
        if op.answers(level, type) or (type and op.answers("instance", type))
    ]
    unique = {op.name: op for op in found}
    listed = [
        {"name": name, "definition": op.definition or f"{SERVER_DEFINITIONS}{name}"}
        for name, op in sorted(unique.items())
    ]
    return {"operation": listed} if listed else {}


def _common_params() -> list[dict[str, str]]:
    return [
        {
            "name": "_id",
            "type": "token",
            "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
        },
        {
            "name": "_lastUpdated",
            "type": "date",
            "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
        },
    ]
