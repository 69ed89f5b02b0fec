"""The search parameters, resource types and compartments of FHIR R4, from the core package.

Loaded from the compact files `scripts/generate_r4_data.py` derives from `hl7.fhir.r4.core`
4.0.1 (`fhir_server/data/`). Parameters defined on `Resource` (`_id`, `_lastUpdated`,
`_tag`, `_profile`, `_security`, `_source`, `_query`, `_content`) apply to every type, those
on `DomainResource` (`_text`) to every type but Binary, Bundle and Parameters.
https://hl7.org/fhir/R4/searchparameter-registry.html

Experimental SearchParameters of the package (extension-based ones, and the examples that
would shadow real parameters such as `Condition.subject`) are not active; `add()` can
register them, or any custom SearchParameter, at run time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Any

from fhir_server.search.expressions import reference_types

ANY_TARGET = "Resource"  # in `target`: Reference(Any), every type but Parameters


@dataclass(frozen=True, slots=True)
class Component:
    """One part of a composite parameter: the parameter it uses and the expression under it."""

    definition: str
    expression: str


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One SearchParameter (https://hl7.org/fhir/R4/searchparameter.html), prose left out."""

    url: str
    code: str
    base: tuple[str, ...]
    type: str  # number date string token reference composite quantity uri special
    expression: str | None = None
    target: tuple[str, ...] = ()
    modifier: tuple[str, ...] = ()
    comparator: tuple[str, ...] = ()
    multiple_or: bool | None = None
    multiple_and: bool | None = None
    components: tuple[Component, ...] = ()
    chain: tuple[str, ...] = ()
    experimental: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SearchParam:
        """From a SearchParameter resource, or from an entry of r4_search_parameters.json."""
        return cls(
            url=data["url"],
            code=data["code"],
            base=tuple(data.get("base", ())),
            type=data["type"],
            expression=data.get("expression"),
            target=tuple(data.get("target", ())),
            modifier=tuple(data.get("modifier", ())),
            comparator=tuple(data.get("comparator", ())),
            multiple_or=data.get("multipleOr"),
            multiple_and=data.get("multipleAnd"),
            components=tuple(
                Component(c["definition"], c["expression"]) for c in data.get("component", ())
            ),
            chain=tuple(data.get("chain", ())),
            experimental=bool(data.get("experimental", False)),
        )


@dataclass
class SearchRegistry:
    """Resource types, their search parameters by code, and the compartment definitions.

    `generation` grows with every `add()`, so caches built from the registry (compiled
    expressions) know when to rebuild.
    """

    parents: Mapping[str, str]  # concrete resource type -> Resource | DomainResource
    compartments: Mapping[str, Mapping[str, tuple[str, ...]]]  # Patient -> Observation -> params
    _by_base: dict[str, dict[str, SearchParam]] = field(default_factory=dict)
    _by_url: dict[str, SearchParam] = field(default_factory=dict)
    _views: dict[str, Mapping[str, SearchParam]] = field(default_factory=dict)
    generation: int = 0
    resource_types: frozenset[str] = field(init=False)
    referenceable: frozenset[str] = field(init=False)  # every type but Parameters

    def __post_init__(self) -> None:
        self.resource_types = frozenset(self.parents)
        self.referenceable = self.resource_types - {"Parameters"}

    def add(self, param: SearchParam) -> None:
        """Register (or replace) a parameter for each of its base types, effective at once."""
        previous = self._by_url.get(param.url)
        if previous is not None:
            for base in previous.base:
                self._by_base.get(base, {}).pop(previous.code, None)
        self._by_url[param.url] = param
        for base in param.base:
            self._by_base.setdefault(base, {})[param.code] = param
        self._views.clear()
        self.generation += 1

    def remove(self, url: str) -> SearchParam | None:
        """Unregister the parameter with this canonical `url` (the one removed, or None)."""
        previous = self._by_url.pop(url, None)
        if previous is not None:
            for base in previous.base:
                if self._by_base.get(base, {}).get(previous.code) is previous:
                    del self._by_base[base][previous.code]
            self._views.clear()
            self.generation += 1
        return previous

    def params_for(self, type: str) -> Mapping[str, SearchParam]:
        """Parameters of `type` by code, the Resource and DomainResource ones included."""
        view = self._views.get(type)
        if view is None:
            merged: dict[str, SearchParam] = {}
            for level in self._lineage(type):
                merged.update(self._by_base.get(level, {}))
            view = self._views[type] = MappingProxyType(merged)
        return view

    def param(self, type: str, code: str) -> SearchParam | None:
        return self.params_for(type).get(code)

    def by_url(self, url: str) -> SearchParam | None:
        return self._by_url.get(url)

    def targets(self, param: SearchParam, type: str | None = None) -> frozenset[str]:
        """The resource types a reference parameter may point to (Any expanded).

        With `type`, narrowed to what the expression keeps for that type: the shared
        `patient` parameter targets Patient and Group, but on Observation its expression is
        `Observation.subject.where(resolve() is Patient)`.
        """
        targets = self.referenceable if ANY_TARGET in param.target else frozenset(param.target)
        if type is not None and param.expression:
            only = reference_types(param.expression, type, self.resource_types)
            if only:
                return targets & only or only
        return targets

    def compartment_params(self, compartment: str, type: str) -> tuple[str, ...]:
        """The parameters of `type` that place a resource in a `compartment` (e.g. Patient)."""
        return self.compartments.get(compartment, {}).get(type, ())

    @property
    def params(self) -> Iterable[SearchParam]:
        return self._by_url.values()

    def _lineage(self, type: str) -> tuple[str, ...]:
        parent = self.parents.get(type)
        if parent is None:
            return (type,)
        if parent == "DomainResource":
            return ("Resource", "DomainResource", type)
        return ("Resource", type)


def _data(name: str) -> Any:
    return json.loads(files("fhir_server").joinpath("data", name).read_bytes())


def build_registry(*, experimental: bool = False) -> SearchRegistry:
    """A fresh registry from the packaged R4 data (experimental parameters only if asked)."""
    comps = {
        name: MappingProxyType({t: tuple(ps) for t, ps in members.items()})
        for name, members in _data("r4_compartments.json").items()
    }
    registry = SearchRegistry(
        MappingProxyType(_data("r4_resource_types.json")), MappingProxyType(comps)
    )
    for entry in _data("r4_search_parameters.json"):
        param = SearchParam.from_json(entry)
        if experimental or not param.experimental:
            registry.add(param)
    registry.generation = 0
    return registry


@cache
def load_registry() -> SearchRegistry:
    """The process-wide registry of R4 parameters (built once)."""
    return build_registry()
