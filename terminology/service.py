"""Plugging the terminology service into the FHIR service.

- Content: the R4 core code systems, value sets and concept maps, plus every CodeSystem,
  ValueSet and ConceptMap stored in the server, loaded at start-up and kept current by a
  write listener (a create, update or delete takes effect when its transaction commits).
  Each server process keeps its own copy; a change made through another process (a
  worker, or a server on the same MongoDB) reaches it within a second (see
  `fhir_server.interactions.shared`).
- Operations: $lookup, $validate-code, $subsumes, $expand, $translate, and `$validate`
  (https://hl7.org/fhir/R4/resource-operation-validate.html) on every resource type.
- Validation on write: coded elements with a required binding must hold a code of the
  bound value set (https://hl7.org/fhir/R4/terminologies.html#required); a value set the
  service cannot expand (e.g. all of UCUM or BCP-47) is not checked.
- Search: token `:in`, `:not-in`, `:above`, `:below` ask this service for their codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.errors import BadRequest, InvalidResource, Issue, operation_outcome
from fhir_server.interactions.operations import Operation, OperationCall
from fhir_server.model import fhirjson
from fhir_server.model.validate import validate_resource
from fhir_server.storage.base import StoredResource
from terminology.bindings import check_bindings
from terminology.operations import instance_resource, operations
from terminology.registry import Terminology

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService, Validator

CONTENT_TYPES = ("CodeSystem", "ValueSet", "ConceptMap")
_ALL_STRENGTHS = frozenset({"required", "extensible", "preferred"})


async def install(svc: FhirService, terminology: Terminology | None = None) -> Terminology:
    """Attach a terminology service (the R4 core content by default) to `svc`."""
    terminology = terminology or Terminology()
    await svc.watch(CONTENT_TYPES, lambda rec: _apply(terminology, rec))
    svc.use_codes(terminology)
    svc.add_validator(_required_bindings(terminology))
    for operation in operations(terminology):
        svc.add_operation(operation)
    svc.add_operation(_validate_operation(terminology))
    return terminology


def _apply(terminology: Terminology, rec: StoredResource) -> None:
    if rec.deleted:
        terminology.remove(rec.type, rec.id)
    else:
        terminology.put(fhirjson.loads(rec.data))


def _required_bindings(terminology: Terminology) -> Validator:
    def check(resource: dict[str, Any]) -> None:
        issues = check_bindings(resource, terminology.contains)
        if issues:
            raise InvalidResource(issues[0].diagnostics, issues=issues)

    return check


def _validate_operation(terminology: Terminology) -> Operation:
    async def run(svc: FhirService, call: OperationCall) -> dict[str, Any]:
        resource = call.params.resource("resource")
        if resource is None:
            resource = await instance_resource(svc, call)
        if resource is None:
            raise BadRequest(
                "$validate needs a resource (the body, or a 'resource' parameter)",
                expression=("resource",),
            )
        return validate_outcome(terminology, resource, call.type)

    return Operation(
        "validate",
        run,
        frozenset({"type", "instance"}),
        definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
        access="none",
    )


def validate_outcome(
    terminology: Terminology, resource: dict[str, Any], type: str | None
) -> dict[str, Any]:
    """An OperationOutcome for `resource`: structure errors, then binding errors (required)
    and warnings (extensible, preferred). `information` "no issues" when it is valid."""
    issues: list[Issue] = []
    if type and resource.get("resourceType") != type:
        issues.append(
            Issue(
                f"Resource type '{resource.get('resourceType')}' is not {type}",
                "invalid",
                "error",
                ("resourceType",),
            )
        )
    try:
        valid = validate_resource(resource)
    except InvalidResource as error:
        issues.extend(error.issues)
    else:
        issues.extend(check_bindings(valid, terminology.contains, strengths=_ALL_STRENGTHS))
    if not issues:
        issues.append(Issue("No issues found", "informational", "information"))
    return operation_outcome(issues)
