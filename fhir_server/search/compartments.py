"""Compartments: https://hl7.org/fhir/R4/compartmentdefinition.html

A resource is in the compartment `Patient/123` when one of the parameters the Patient
CompartmentDefinition lists for its type references `Patient/123` (`Observation`:
`subject`, `performer`); `{def}` stands for the compartment's own resource, which is
always in its compartment. Compartment search (`GET Patient/123/Observation`) and
`$everything` are searches narrowed by these clauses.
"""

from __future__ import annotations

from fhir_server.search.conditions import Clause, Condition, IdCondition, ReferenceCondition
from fhir_server.search.extract import Indexer
from fhir_server.search.registry import SearchRegistry
from fhir_server.search.values import ReferenceValue

OWN = "{def}"


def member_types(registry: SearchRegistry, compartment: str) -> tuple[str, ...]:
    """The resource types that can be in a `compartment` (a type name, e.g. Patient)."""
    members = registry.compartments.get(compartment, {})
    return tuple(sorted(t for t in members if membership_params(registry, compartment, t)
                        or t == compartment))


def membership_params(registry: SearchRegistry, compartment: str, type: str) -> tuple[str, ...]:
    """The reference parameters of `type` that place it in `compartment`."""
    out = []
    for code in registry.compartment_params(compartment, type):
        param = registry.param(type, code)
        if param is not None and param.type == "reference" and param.expression:
            out.append(code)
    return tuple(out)


def clause(registry: SearchRegistry, compartment: str, id: str, types: tuple[str, ...]
           ) -> Clause:
    """One OR clause matching the members of `compartment/id` among `types`.

    With several types, a parameter one type uses for the compartment matches on every
    type that has it: `exact_member` then tells the true members apart."""
    found: dict[Condition, None] = {}
    for type in types:
        if type == compartment:  # on other types `exact_member` drops what this matches
            found[IdCondition((id,))] = None
        for code in membership_params(registry, compartment, type):
            found[ReferenceCondition(code, compartment, id)] = None
    return tuple(found)


def exact_member(registry: SearchRegistry, indexer: Indexer, compartment: str, id: str,
                 resource: dict) -> bool:
    """Whether `resource` is in `compartment/id` by its own type's parameters."""
    type = resource.get("resourceType")
    if not isinstance(type, str):
        return False
    if type == compartment and resource.get("id") == id:
        return True
    codes = membership_params(registry, compartment, type)
    return any(isinstance(v, ReferenceValue) and v.target_type == compartment
               and v.target_id == id for v in indexer.values_of(resource, codes))
