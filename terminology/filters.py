"""ValueSet.compose.include.filter, compiled against one CodeSystemIndex.

https://hl7.org/fhir/R4/valueset-definitions.html#ValueSet.compose.include.filter: "Select
concepts by specify a matching criterion based on the properties (including relationships)
defined by the system. If multiple filters are specified, they SHALL all be true."
Operators: https://hl7.org/fhir/R4/valueset-filter-operator.html. The property `concept`
(or `code`) is the concept itself, so is-a, descendent-of, is-not-a and generalizes follow
the hierarchy; `parent`/`child` are the direct hierarchy links; `display` is the display;
any other property is a concept property of the system (its value compared as text).

A compiled filter is a predicate on a concept plus, where cheap, the candidate keys that can
pass it, so an expansion need not scan the whole system.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.safe_regex import compile_regex
from terminology.codesystem import CHILD, PARENT, CodeSystemIndex, Concept

OPERATORS = frozenset(
    {"=", "is-a", "descendent-of", "is-not-a", "regex", "in", "not-in", "generalizes", "exists"}
)
_SELF = frozenset({"concept", "code"})
_HIERARCHY_OPS = frozenset({"is-a", "descendent-of", "is-not-a", "generalizes"})

Test = Callable[[Concept], bool]


@dataclass(frozen=True)
class Filter:
    """A predicate on concepts; `candidates()` bounds the keys that can pass (None: any).

    Tests on the hierarchy are range checks on the index's labels, so checking one code never
    computes a (possibly huge) descendant set; only an expansion calls `candidates`.
    """

    test: Test
    candidates: Callable[[], frozenset[str]] | None = None


def compile_filter(index: CodeSystemIndex, spec: Any) -> Filter:
    """Compile one include/exclude filter (memoised on the index); BadRequest when bad."""
    if not isinstance(spec, dict):
        raise BadRequest("ValueSet filter must be an object")
    prop, op, value = spec.get("property"), spec.get("op"), spec.get("value")
    if not isinstance(prop, str) or not isinstance(op, str) or not isinstance(value, str):
        raise BadRequest(f"ValueSet filter needs property, op and value: {spec}")
    cached = index.compiled.get((prop, op, value))
    if cached is None:
        cached = index.compiled[(prop, op, value)] = _compile(index, prop, op, value)
    return cached


def _compile(index: CodeSystemIndex, prop: str, op: str, value: str) -> Filter:
    if op not in OPERATORS:
        raise BadRequest(f"Unknown ValueSet filter operator '{op}' (property '{prop}')")
    if prop in _SELF:
        return _on_concept(index, op, value)
    if op in _HIERARCHY_OPS:
        raise BadRequest(f"Filter operator '{op}' applies to property 'concept', not '{prop}'")
    if prop in (PARENT, CHILD) and prop not in index.property_codes:
        return _on_link(index, prop, op, value)
    if prop == "display":
        return _on_text(op, value, lambda c: [c.display] if c.display else [])
    if not _known_property(index, prop):
        raise BadRequest(f"Unknown filter property '{prop}' for code system {index.url}")
    return _on_text(op, value, lambda c: c.property_values(prop))


def _known_property(index: CodeSystemIndex, prop: str) -> bool:
    return prop in index.property_codes or any(c.property_values(prop) for c in index)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _regex(value: str) -> Any:
    """The filter's pattern on RE2 (linear time: a client's regex cannot stall the server)."""
    return compile_regex(value, "Filter regex")


def _on_concept(index: CodeSystemIndex, op: str, value: str) -> Filter:
    """Filters on the concept itself: its code and its place in the hierarchy."""
    key = index.key(value)
    if op == "=":
        return Filter(lambda c: c.key == key, lambda: frozenset({key}))
    if op in ("in", "not-in"):
        keys = frozenset(index.key(v) for v in _split(value))
        if op == "in":
            return Filter(lambda c: c.key in keys, lambda: keys)
        return Filter(lambda c: c.key not in keys)
    if op == "regex":
        pattern = _regex(value)
        return Filter(lambda c: pattern.fullmatch(c.code) is not None)
    if op == "exists":
        return Filter(lambda c: value == "true")
    return _on_hierarchy(index, op, key)


def _on_hierarchy(index: CodeSystemIndex, op: str, key: str) -> Filter:
    """is-a and friends; a code the system does not define selects nothing (is-not-a: all)."""
    if index.get(key) is None:
        return Filter(lambda c: op == "is-not-a", None if op == "is-not-a" else frozenset)
    if op == "generalizes":
        above = index.ancestors(key) | {key}
        return Filter(lambda c: c.key in above, lambda: above)
    if op == "descendent-of":
        return Filter(
            lambda c: c.key != key and index.is_a(c.key, key), lambda: index.descendants(key)
        )
    if op == "is-a":
        return Filter(
            lambda c: index.is_a(c.key, key),
            lambda: index.descendants(key) | {key},
        )
    return Filter(lambda c: not index.is_a(c.key, key))


def _on_link(index: CodeSystemIndex, prop: str, op: str, value: str) -> Filter:
    """`parent` / `child` filters read from the hierarchy when not declared as properties."""
    links = index.parents if prop == PARENT else index.children

    def codes(concept: Concept) -> list[str]:
        return [index.concept(k).code for k in links(concept.key)]

    return _on_text(op, value, codes)


def _on_text(op: str, value: str, values: Callable[[Concept], list[str]]) -> Filter:
    """Filters comparing the text values of a concept property (or display) with `value`."""
    if op == "=":
        return Filter(lambda c: value in values(c))
    if op in ("in", "not-in"):
        wanted = set(_split(value))
        if op == "in":
            return Filter(lambda c: not wanted.isdisjoint(values(c)))
        return Filter(lambda c: wanted.isdisjoint(values(c)))
    if op == "regex":
        pattern = _regex(value)
        return Filter(lambda c: any(pattern.fullmatch(v) for v in values(c)))
    if op == "exists":
        return Filter(lambda c: bool(values(c)) == (value == "true"))
    raise BadRequest(f"Filter operator '{op}' is not supported for this property")


def compile_filters(index: CodeSystemIndex, specs: Any) -> list[Filter]:
    if not isinstance(specs, list):
        raise BadRequest("ValueSet include.filter must be a list")
    return [compile_filter(index, spec) for spec in specs]


def select(index: CodeSystemIndex, filters: list[Filter]) -> list[Concept]:
    """Concepts passing every filter, in document order."""
    bounds = [f.candidates() for f in filters if f.candidates is not None]
    pool = index.ordered(min(bounds, key=len)) if bounds else list(index)
    return [c for c in pool if all(f.test(c) for f in filters)]


def passes(concept: Concept, filters: list[Filter]) -> bool:
    return all(f.test(concept) for f in filters)
