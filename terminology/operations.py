"""The terminology operations as FHIR operations: inputs from their R4 OperationDefinitions.

https://hl7.org/fhir/R4/codesystem-operations.html, valueset-operations.html and
conceptmap-operations.html. Each handler reads the inputs its definition names (GET query
or POST Parameters), resolves the instance for instance-level calls, and hands the rest to
`Terminology`. Outputs are Parameters (a ValueSet for $expand).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.errors import BadRequest
from fhir_server.interactions.operations import Handler, Operation, OperationCall, Params
from fhir_server.model import fhirjson

if TYPE_CHECKING:
    from collections.abc import Callable

    from fhir_server.interactions.service import FhirService
    from terminology.registry import Terminology

    # (terminology, input parameters, the instance or None) -> the output
    TerminologyHandler = Callable[[Terminology, Params, dict[str, Any] | None], dict[str, Any]]

_HL7 = "http://hl7.org/fhir/OperationDefinition/"
_TYPE_AND_INSTANCE = frozenset({"type", "instance"})


def operations(terminology: Terminology) -> list[Operation]:
    """The operations to register on the FHIR service, bound to `terminology`."""

    def bind(handler: TerminologyHandler) -> Handler:
        async def run(svc: FhirService, call: OperationCall) -> dict[str, Any]:
            return handler(terminology, call.params, await instance_resource(svc, call))

        return run

    def op(name: str, type: str, handler: TerminologyHandler) -> Operation:
        return Operation(
            name,
            bind(handler),
            _TYPE_AND_INSTANCE,
            frozenset({type}),
            f"{_HL7}{type}-{name}",
            access="none",
        )

    return [
        op("lookup", "CodeSystem", lookup),
        op("validate-code", "CodeSystem", validate_code_in_system),
        op("subsumes", "CodeSystem", subsumes),
        op("expand", "ValueSet", expand),
        op("validate-code", "ValueSet", validate_code_in_value_set),
        op("translate", "ConceptMap", translate),
    ]


async def instance_resource(svc: FhirService, call: OperationCall) -> dict[str, Any] | None:
    """The stored resource an instance-level call names (None at type level)."""
    if call.level != "instance":
        return None
    assert call.type and call.id
    svc.policy.check(call.context, "read", call.type)
    rec = await svc.current(call.context, call.type, call.id)
    resource: dict[str, Any] = fhirjson.loads(rec.data)
    return resource


def _required(value: str | None, name: str, why: str = "") -> str:
    if not value:
        raise BadRequest(f"Parameter '{name}' is required{why}", expression=(name,))
    return value


def _coding(params: Params, name: str) -> tuple[str | None, str | None, str | None]:
    """system, code, version of a Coding parameter (all None when absent)."""
    coding = params.complex(name)
    if coding is None:
        return None, None, None
    return coding.get("system"), coding.get("code"), coding.get("version")


def lookup(
    terminology: Terminology, params: Params, instance: dict[str, Any] | None
) -> dict[str, Any]:
    system, code, version = _coding(params, "coding")
    code = params.string("code") or code
    system = (instance or {}).get("url") or params.string("system") or system
    return terminology.lookup(
        _required(system, "system", " (or a coding with a system)"),
        _required(code, "code", " (or a coding with a code)"),
        version=params.string("version") or version,
        properties=params.strings("property"),
        display_language=params.string("displayLanguage"),
    )


def validate_code_in_system(
    terminology: Terminology, params: Params, instance: dict[str, Any] | None
) -> dict[str, Any]:
    system, code, version = _coding(params, "coding")
    concept = params.complex("codeableConcept")
    if concept and not code:
        codings = [c for c in concept.get("coding") or () if isinstance(c, dict)]
        system, code = (
            (codings[0].get("system"), codings[0].get("code")) if codings else (None, None)
        )
    url = (instance or params.resource("codeSystem") or params.resource("resource") or {}).get(
        "url"
    )
    return terminology.validate_code_in_system(
        _required(url or params.string("url") or system, "url"),
        _required(params.string("code") or code, "code"),
        version=params.string("version") or version,
        display=params.string("display"),
    )


def subsumes(
    terminology: Terminology, params: Params, instance: dict[str, Any] | None
) -> dict[str, Any]:
    system_a, code_a, version_a = _coding(params, "codingA")
    system_b, code_b, _ = _coding(params, "codingB")
    system = (instance or {}).get("url") or params.string("system") or system_a or system_b
    if system_a and system_b and system_a != system_b:
        raise BadRequest(
            "codingA and codingB must be from the same code system", expression=("codingB",)
        )
    return terminology.subsumes(
        _required(system, "system"),
        _required(params.string("codeA") or code_a, "codeA", " (or codingA)"),
        _required(params.string("codeB") or code_b, "codeB", " (or codingB)"),
        version=params.string("version") or version_a,
    )


def _value_set(params: Params, instance: dict[str, Any] | None) -> dict[str, Any] | str:
    if instance is not None:
        return instance
    given = params.resource("valueSet") or params.resource("resource")  # or the body itself
    if given is not None:
        return given
    url = _required(params.string("url"), "url", " (or a valueSet resource)")
    version = params.string("valueSetVersion")
    return f"{url}|{version}" if version else url


def expand(
    terminology: Terminology, params: Params, instance: dict[str, Any] | None
) -> dict[str, Any]:
    return terminology.expand(
        _value_set(params, instance),
        filter=params.string("filter"),
        count=params.integer("count"),
        offset=params.integer("offset") or 0,
        active_only=params.boolean("activeOnly"),
        include_designations=params.boolean("includeDesignations"),
        display_language=params.string("displayLanguage"),
    )


def validate_code_in_value_set(
    terminology: Terminology, params: Params, instance: dict[str, Any] | None
) -> dict[str, Any]:
    code, coding, concept = (
        params.string("code"),
        params.complex("coding"),
        params.complex("codeableConcept"),
    )
    if not (code or coding or concept):
        raise BadRequest("One of code, coding or codeableConcept is required", expression=("code",))
    return terminology.validate_code_in_value_set(
        _value_set(params, instance),
        code=code,
        system=params.string("system"),
        version=params.string("systemVersion") or params.string("version"),
        display=params.string("display"),
        coding=coding,
        codeable_concept=concept,
    )


def translate(
    terminology: Terminology, params: Params, instance: dict[str, Any] | None
) -> dict[str, Any]:
    system, code, _ = _coding(params, "coding")
    concept = params.complex("codeableConcept")
    if concept and not code:
        codings = [c for c in concept.get("coding") or () if isinstance(c, dict)]
        system, code = (
            (codings[0].get("system"), codings[0].get("code")) if codings else (None, None)
        )
    given = (
        instance
        or params.resource("conceptMap")
        or params.resource("resource")
        or params.string("url")
    )
    return terminology.translate(
        code=_required(params.string("code") or code, "code", " (or a coding)"),
        system=_required(params.string("system") or system, "system", " (or a coding)"),
        concept_map=given,
        source=params.string("source"),
        target=params.string("target"),
        target_system=params.string("targetsystem"),
        reverse=params.boolean("reverse"),
    )
