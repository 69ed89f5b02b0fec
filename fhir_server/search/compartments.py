"""Compartments: https://hl7.org/fhir/R4/compartmentdefinition.html

A resource is in the compartment `Patient/123` when one of the parameters the Patient
CompartmentDefinition lists for its type references `Patient/123` (`Observation`:
`subject`, `performer`); `{def}` stands for the compartment's own resource, which is
always in its compartment. Compartment search (`GET Patient/123/Observation`) and
`$everything` are searches narrowed by these clauses.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.conditions import Clause, Condition, IdCondition, ReferenceCondition
from fhir_server.search.expressions import branches_for, resolve_filter
from fhir_server.search.extract import Indexer
from fhir_server.search.registry import SearchRegistry
from fhir_server.search.values import ReferenceValue


def member_types(registry: SearchRegistry, compartment: str) -> tuple[str, ...]:
    """The resource types that can be in a `compartment` (a type name, e.g. Patient)."""
    members = registry.compartments.get(compartment, {})
    return tuple(
        sorted(
            t for t in members if membership_params(registry, compartment, t) or t == compartment
        )
    )


def membership_params(registry: SearchRegistry, compartment: str, type: str) -> tuple[str, ...]:
    """The reference parameters of `type` that place it in `compartment`."""
    out = []
    for code in registry.compartment_params(compartment, type):
        param = registry.param(type, code)
        if param is not None and param.type == "reference" and param.expression:
            out.append(code)
    return tuple(out)


class Members:
    """The members of one compartment (`Patient/123`) among some resource types.

    `clause` is one OR clause that finds them with one search of all `types`. With several
    types, a parameter one type uses for the compartment matches on every type that has
    it, and the compartment's own id matches any type's resource of that id: `is_member`
    tells those apart by the resource's own parameters; `needs_check` says which results
    can be such a stray at all (most cannot: no need to look inside them)."""

    def __init__(
        self, registry: SearchRegistry, compartment: str, id: str, types: tuple[str, ...]
    ) -> None:
        self.compartment, self.id = compartment, id
        self.params = {t: membership_params(registry, compartment, t) for t in types}
        used = {code for codes in self.params.values() for code in codes}
        self.ambiguous = frozenset(
            t
            for t in types
            if len(types) > 1 and _strays_possible(registry, compartment, t, used, self.params[t])
        )
        found: dict[Condition, None] = {}
        if compartment in types:
            found[IdCondition((id,))] = None
        for codes in self.params.values():
            found.update((ReferenceCondition(code, compartment, id), None) for code in codes)
        self.clause: Clause = tuple(found)

    def needs_check(self, type: str, id: str) -> bool:
        return type in self.ambiguous or (id == self.id and type != self.compartment)

    def is_member(self, indexer: Indexer, resource: dict[str, Any]) -> bool:
        """Whether `resource` is in the compartment by its own type's parameters."""
        type = resource.get("resourceType")
        if not isinstance(type, str):
            return False
        if type == self.compartment and resource.get("id") == self.id:
            return True
        codes = self.params.get(type, ())
        return any(
            isinstance(v, ReferenceValue)
            and v.target_type == self.compartment
            and v.target_id == self.id
            for v in indexer.values_of(resource, codes)
        )


def _paths(registry: SearchRegistry, type: str, code: str) -> set[str]:
    """The element paths a parameter of `type` reads (`.where(resolve() is X)` aside)."""
    param = registry.param(type, code)
    if param is None or not param.expression:
        return set()
    return {
        resolve_filter(b)[0] for b in branches_for(param.expression, type, registry.resource_types)
    }


def _strays_possible(
    registry: SearchRegistry, compartment: str, type: str, used: set[str], own: tuple[str, ...]
) -> bool:
    """Whether a parameter of `type` that other types use for the compartment, but `type`
    does not, can reference the compartment through elements its own membership
    parameters do not read (Observation's `patient` reads `Observation.subject`, as its
    `subject` does: no stray possible)."""
    key = (id(registry), registry.generation, compartment, type, frozenset(used))
    found = _STRAYS.get(key)
    if found is None:
        covered = set().union(*(_paths(registry, type, code) for code in own))
        found = any(
            code in used
            and code not in own
            and p.type == "reference"
            and compartment in registry.targets(p, type)
            and not _paths(registry, type, code) <= covered
            for code, p in registry.params_for(type).items()
        )
        if len(_STRAYS) > 10_000:
            _STRAYS.clear()
        _STRAYS[key] = found
    return found


_STRAYS: dict[tuple[Any, ...], bool] = {}
