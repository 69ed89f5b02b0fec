"""Search index extraction: the index values a resource contributes, computed at write time.

https://hl7.org/fhir/R4/search.html -- every search parameter of the resource's type is
evaluated with its FHIRPath expression (fhirpathpy) and each FHIR value it selects becomes
index values of the parameter's type (see `types/`). `_id` and `_lastUpdated` are not
indexed here: storage engines keep the id and meta.lastUpdated of every version anyway.

Expressions are compiled once per resource type, at first use (or `prepare()`). A union
such as `Patient.name | Practitioner.name` is split and each type keeps only its own
branches; `Resource.meta.tag` becomes `Patient.meta.tag`; `.where(resolve() is Patient)`
(fhirpathpy has no `resolve()`) becomes a filter on the reference's type. A branch that is
a plain path skips evaluation when the resource lacks its first element (`name` in
`Patient.name.given`, any `value[x]` for `Observation.value`). Plain member paths are
followed over the JSON directly (`paths.py`, checked against fhirpathpy by the tests);
the rest go to fhirpathpy. Expressions fhirpathpy cannot compile or evaluate are recorded
in `Indexer.failures` (and logged once), never raised.

A composite parameter is indexed per element of its base expression (`CompositePlan`):
each component's expression is evaluated relative to that element, so its values combine
only with values of the same element. Plain component paths (`code`, `value.as(Quantity)`)
are followed over the element's JSON too (`paths.compile_relative`, checked against
fhirpathpy by tests/unit/hl7v2/test_fast_paths.py), the rest go to fhirpathpy.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_server import fhirpath_limits  # noqa: F401  (repeat() on computed values ends)
from fhir_server.safe_regex import FHIRPATH_FUNCTIONS
from fhir_server.search.expressions import (
    ABSTRACT,
    branches_for,
    is_plain_path,
    lead,
    resolve_filter,
)
from fhir_server.search.paths import compile_path, compile_relative
from fhir_server.search.registry import SearchParam, SearchRegistry
from fhir_server.search.types import TYPES, SearchType
from fhir_server.search.values import ComponentValue, CompositeValue, IndexValue, ReferenceValue

log = logging.getLogger(__name__)

_MODEL = models["r4"]
_CHOICES: dict[str, list[str]] = _MODEL["choiceTypePaths"]
_OPTIONS = {"returnRawData": True, "userInvocationTable": FHIRPATH_FUNCTIONS}  # RE2 regexes
_NOT_INDEXED = frozenset({"_id", "_lastUpdated"})


@dataclass(frozen=True, slots=True)
class Branch:
    """One union branch of an expression, compiled for one resource type."""

    expression: str
    evaluate: Callable[[dict[str, Any]], list[tuple[str | None, Any]]]  # (FHIR type or None, value)
    keys: tuple[str, ...] | None  # evaluate only if the resource has one of these; None: always
    only: str | None = None  # keep only references to this type (from `resolve() is X`)
    absent: tuple[tuple[str | None, Any], ...] = ()  # the result when none of `keys` is there


@dataclass(frozen=True, slots=True)
class Plan:
    """How to index one parameter of one resource type."""

    code: str
    kind: SearchType
    branches: tuple[Branch, ...]


Evaluate = Callable[[dict[str, Any]], list[tuple[str | None, Any]]]


@dataclass(frozen=True, slots=True)
class CompositePlan:
    """How to index one composite parameter of one resource type.

    `bases` are the union branches of the base expression, each (element path, evaluate,
    fast components); `components` the component types and their expressions compiled by
    fhirpathpy, relative to an element of that path (fhirpathpy uses the path for choice
    types like `value[x]`). A fast component (`paths.compile_relative`, None when the
    expression is not a plain path) is followed over the element's JSON instead."""

    code: str
    bases: tuple[tuple[str, Evaluate, tuple[Evaluate | None, ...]], ...]
    components: tuple[tuple[SearchType, Any], ...]

    def values(self, resource: dict[str, Any]) -> Iterator[CompositeValue]:
        for path, evaluate, fast in self.bases:
            for _, element in evaluate(resource):
                if isinstance(element, dict):
                    yield from self._combinations(resource, element, path, fast)

    def _combinations(
        self,
        resource: dict[str, Any],
        element: dict[str, Any],
        path: str,
        fast: tuple[Evaluate | None, ...],
    ) -> Iterator[CompositeValue]:
        per_component = []
        node = None
        for (kind, compiled), quick in zip(self.components, fast, strict=True):
            if quick is not None:
                pairs = quick(element)
            else:
                if node is None:
                    # fhirpathpy leaves create_node unannotated
                    node = ResourceNode.create_node(element, path)  # type: ignore[no-untyped-call]
                pairs = [_typed(n) for n in compiled(node, {"resource": resource})]
            found = [v for pair in pairs for v in kind.extract(self.code, *pair)]
            if not found:
                return
            per_component.append(list(dict.fromkeys(found)))
        for parts in itertools.product(*per_component):
            # no component is composite or special, so its values are ComponentValues
            yield CompositeValue(self.code, cast(tuple[ComponentValue, ...], tuple(parts)))


class Indexer:
    """Turns resources into index values for the parameters of a `SearchRegistry`."""

    def __init__(self, registry: SearchRegistry, *, fast_paths: bool = True) -> None:
        self.registry = registry
        self.fast_paths = fast_paths  # plain member paths without fhirpathpy, see paths.py
        self.failures: dict[tuple[str, str], str] = {}  # (type, code) -> what went wrong
        self._plans: dict[str, tuple[int, tuple[Plan | CompositePlan, ...]]] = {}

    def extract(self, resource: dict[str, Any]) -> list[IndexValue]:
        """The duplicate-free index values of `resource` (its resourceType picks the params)."""
        type = resource.get("resourceType")
        if not isinstance(type, str):
            return []
        return self._values(type, resource, self.plans(type))

    def values_of(self, resource: dict[str, Any], codes: Container[str]) -> list[IndexValue]:
        """The index values of `resource` for the parameters `codes` only (for `_include`)."""
        type = resource.get("resourceType")
        if not isinstance(type, str):
            return []
        return self._values(type, resource, [p for p in self.plans(type) if p.code in codes])

    def _values(
        self, type: str, resource: dict[str, Any], plans: Iterable[Plan | CompositePlan]
    ) -> list[IndexValue]:
        found: dict[IndexValue, None] = {}
        for plan in plans:
            if isinstance(plan, CompositePlan):
                try:
                    found.update(dict.fromkeys(plan.values(resource)))
                except Exception as error:  # one bad expression must not fail a write
                    self._fail(type, plan.code, f"composite: {error!r}")
                continue
            present = resource.keys()
            for branch in plan.branches:
                keys = branch.keys
                results: Sequence[tuple[str | None, Any]]
                try:
                    if keys is None or not present.isdisjoint(keys):
                        results = branch.evaluate(resource)
                    elif branch.absent:
                        results = branch.absent
                    else:
                        continue
                    if results:
                        self._add(plan, branch, results, found)
                except Exception as error:  # one bad expression must not fail a write
                    self._fail(type, plan.code, f"{branch.expression}: {error!r}")
        return list(found)

    def plans(self, type: str) -> tuple[Plan | CompositePlan, ...]:
        """The compiled plans of `type` (compiled on first use, again after registry.add)."""
        cached = self._plans.get(type)
        if cached is None or cached[0] != self.registry.generation:
            cached = (self.registry.generation, self._compile(type))
            self._plans[type] = cached
        return cached[1]

    def prepare(self, types: Iterable[str] | None = None) -> None:
        """Compile the expressions of `types` (default: every type) ahead of the first write."""
        for type in sorted(self.registry.resource_types if types is None else types):
            self.plans(type)

    def _add(
        self, plan: Plan, branch: Branch, results: Iterable[Any], found: dict[IndexValue, None]
    ) -> None:
        only = branch.only
        if only is None:
            extract, code = plan.kind.extract, plan.code
            for fhir_type, data in results:
                for value in extract(code, fhir_type, data):
                    found[value] = None
            return
        for fhir_type, data in results:
            for value in plan.kind.extract(plan.code, fhir_type, data):
                if only is None or (
                    isinstance(value, ReferenceValue) and value.target_type == only
                ):
                    found[value] = None

    def _compile(self, type: str) -> tuple[Plan | CompositePlan, ...]:
        plans: list[Plan | CompositePlan] = []
        for code, param in sorted(self.registry.params_for(type).items()):
            kind = TYPES.get(param.type)
            if kind is None or code in _NOT_INDEXED or not param.expression:
                continue
            if param.type == "composite":
                composite = self._composite(type, param)
                if composite is not None:
                    plans.append(composite)
                continue
            branches = tuple(self._branches(type, param))
            if branches:
                plans.append(Plan(code, kind, branches))
        return tuple(plans)

    def _branches(self, type: str, param: SearchParam) -> Iterable[Branch]:
        assert param.expression
        for text in branches_for(param.expression, type, self.registry.resource_types):
            expression, keys, only = plan_branch(type, text)
            evaluate: Evaluate | None = compile_path(expression) if self.fast_paths else None
            if evaluate is None:
                try:
                    evaluate = with_fhirpathpy(expression)
                except Exception as error:  # recorded; the param stays unindexed
                    self._fail(type, param.code, f"{expression}: cannot compile: {error!r}")
                    continue
            absent: tuple[Any, ...] = ()
            if keys is None:
                keys = _referenced_keys(type, expression)
                try:
                    absent = tuple(evaluate({"resourceType": type})) if keys else ()
                except Exception:  # evaluated per write instead; failures recorded there
                    keys = None
            yield Branch(expression, evaluate, keys, only, absent)

    def _composite(self, type: str, param: SearchParam) -> CompositePlan | None:
        assert param.expression
        try:
            texts = branches_for(param.expression, type, self.registry.resource_types)
            components = []
            for component in param.components:
                target = self.registry.by_url(component.definition)
                kind = TYPES.get(target.type) if target else None
                if kind is None or target is None or target.type in ("composite", "special"):
                    raise ValueError(f"unsupported component {component.definition}")
                components.append(
                    (kind, fhirpathpy.compile(component.expression, _MODEL, _OPTIONS))
                )
            bases = tuple(self._composite_base(type, text, param) for text in texts)
        except Exception as error:  # recorded; the param stays unindexed
            self._fail(type, param.code, f"{param.expression}: cannot compile: {error!r}")
            return None
        return CompositePlan(param.code, bases, tuple(components)) if bases else None

    def _composite_base(
        self, type: str, text: str, param: SearchParam
    ) -> tuple[str, Evaluate, tuple[Evaluate | None, ...]]:
        """(path, evaluate, fast components) of one base branch of a composite."""
        if not self.fast_paths:
            return text, with_fhirpathpy(text), tuple(None for _ in param.components)
        # `Type` itself is the resource (`Observation` in code-value-quantity)
        evaluate: Evaluate | None = _itself(type) if text == type else compile_path(text)
        fast = tuple(compile_relative(text, c.expression) for c in param.components)
        return text, evaluate or with_fhirpathpy(text), fast

    def _fail(self, type: str, code: str, message: str) -> None:
        if (type, code) not in self.failures:
            log.warning("search parameter %s.%s not indexed: %s", type, code, message)
        self.failures[(type, code)] = message


def with_fhirpathpy(expression: str) -> Callable[[dict[str, Any]], list[tuple[str | None, Any]]]:
    """`expression` compiled by fhirpathpy, giving (FHIR type or None, value) pairs."""
    compiled = fhirpathpy.compile(expression, _MODEL, _OPTIONS)

    def evaluate(resource: dict[str, Any]) -> list[tuple[str | None, Any]]:
        return [_typed(node) for node in compiled(resource, {})]

    return evaluate


def _itself(type: str) -> Evaluate:
    """`Type` as an expression: the resource, when it is of that type (as fhirpathpy gives)."""

    def evaluate(resource: dict[str, Any]) -> list[tuple[str | None, Any]]:
        return [(type, resource)] if resource.get("resourceType") == type else []

    return evaluate


def _typed(node: Any) -> tuple[str | None, Any]:
    if not isinstance(node, ResourceNode):
        return None, node
    fhir_type = node.path
    if fhir_type is not None and "." in fhir_type and not fhir_type.startswith("System."):
        fhir_type = None  # a backbone element's path, not a type name
    return fhir_type, node.data


def plan_branch(type: str, text: str) -> tuple[str, tuple[str, ...] | None, str | None]:
    """(expression for `type`, JSON keys of which one must be present, reference type filter)."""
    text, only = resolve_filter(text)
    found = lead(text)
    if found is None:
        return text, None, only
    lead_type, elem, start, end = found
    if lead_type in ABSTRACT:
        text = text[:start] + type + text[end:]
    keys = _json_keys(type, elem) if is_plain_path(text) else None
    return text, keys, only


def _referenced_keys(type: str, expression: str) -> tuple[str, ...] | None:
    """The JSON keys an expression can read, when it reads the resource only as `Type.elem`.

    Such an expression gives the same result on every resource that has none of those
    keys, so that result is computed once (on an empty resource) instead of per write --
    `Patient.deceased.exists() and Patient.deceased != false` costs ~190 µs in fhirpathpy.
    """
    if "%" in expression:
        return None
    mentions = list(re.finditer(rf"\b{type}\b(\.(?P<elem>[a-z][A-Za-z0-9]*))?", expression))
    if not mentions or any(m["elem"] is None for m in mentions):
        return None
    keys: list[str] = []
    for mention in mentions:
        keys += [k for k in _json_keys(type, mention["elem"]) if k not in keys]
    return tuple(keys)


def _json_keys(type: str, elem: str) -> tuple[str, ...]:
    """The JSON property names element `elem` of `type` may appear under (value[x] expanded)."""
    choices = _CHOICES.get(f"{type}.{elem}")
    if not choices:
        return (elem,)
    return tuple(elem + choice[0].upper() + choice[1:] for choice in choices)
