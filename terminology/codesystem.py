"""An index over one CodeSystem: its concepts by code and its subsumption hierarchy.

https://hl7.org/fhir/R4/codesystem.html#hierarchy: "the concepts may be arranged in a
hierarchy, either by nesting concepts inside each other, or by using the properties `parent`
and `child`". Both are read, so the hierarchy is a directed acyclic graph: a concept may have
several parents (v3 code systems nest concepts and add `child` properties; imported
SNOMED-style systems are flat with `parent` properties).

Codes compare exactly unless the CodeSystem says `caseSensitive: false`, in which case they
compare case-folded (https://hl7.org/fhir/R4/codesystem-definitions.html#CodeSystem.caseSensitive).

Subsumption reads interval labels (`terminology.hierarchy`) computed once per code system on
first use, so an is-a test is a range check; ancestor and descendant sets are kept once
asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from terminology.hierarchy import Hierarchy

# Concept property codes that carry the hierarchy or the concept's status
# (https://hl7.org/fhir/R4/codesystem-concept-properties.html).
PARENT, CHILD = "parent", "child"
INACTIVE_STATUSES = frozenset({"retired", "inactive", "deprecated"})

_VALUE_KEYS = (
    "valueCode",
    "valueString",
    "valueInteger",
    "valueBoolean",
    "valueDateTime",
    "valueDecimal",
)


@dataclass(frozen=True, slots=True)
class Concept:
    """One concept of a code system, as the operations need it."""

    code: str
    key: str
    display: str | None
    definition: str | None
    designations: tuple[dict[str, Any], ...]
    properties: tuple[dict[str, Any], ...]
    abstract: bool
    inactive: bool

    def property_values(self, code: str) -> list[str]:
        """The values of property `code`, as strings (a Coding gives its code)."""
        return [property_text(p) for p in self.properties if p.get("code") == code]


def property_text(prop: dict[str, Any]) -> str:
    """A concept property value as text: booleans as true/false, a Coding as its code."""
    for key in _VALUE_KEYS:
        if key in prop:
            value = prop[key]
            return ("true" if value else "false") if isinstance(value, bool) else str(value)
    coding = prop.get("valueCoding")
    return str(coding.get("code", "")) if isinstance(coding, dict) else ""


def _dicts(value: Any) -> tuple[dict[str, Any], ...]:
    return tuple(v for v in value if isinstance(v, dict)) if isinstance(value, list) else ()


def _flag(properties: tuple[dict[str, Any], ...], *codes: str) -> bool:
    return any(p.get("code") in codes and p.get("valueBoolean") is True for p in properties)


def _inactive(properties: tuple[dict[str, Any], ...]) -> bool:
    statuses = {p.get("valueCode") for p in properties if p.get("code") == "status"}
    return _flag(properties, "inactive") or bool(statuses & INACTIVE_STATUSES)


class CodeSystemIndex:
    """Concepts of one CodeSystem by code, with parents, children and is-a closures."""

    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource
        self.url: str = resource.get("url", "")
        self.version: str | None = resource.get("version")
        self.name: str | None = resource.get("name") or resource.get("title")
        self.content: str = resource.get("content", "complete")
        self.case_sensitive: bool = resource.get("caseSensitive") is not False
        self.property_codes = frozenset(
            p["code"] for p in _dicts(resource.get("property")) if isinstance(p.get("code"), str)
        )
        self._concepts: dict[str, Concept] = {}
        self._parents: dict[str, list[str]] = {}
        self._children: dict[str, list[str]] = {}
        self._ancestors: dict[str, frozenset[str]] = {}
        self._descendants: dict[str, frozenset[str]] = {}
        self._position: dict[str, int] | None = None
        self._hierarchy: Hierarchy | None = None
        self.compiled: dict[tuple[str, str, str], Any] = {}  # filters.compile_filter's memo
        edges: list[tuple[str, str]] = []
        self._read(resource.get("concept", ()), None, edges)
        self._link(edges)

    # -- building -----------------------------------------------------------------------

    def key(self, code: str) -> str:
        """The lookup key of `code`: itself, or case-folded in a case-insensitive system."""
        return code if self.case_sensitive else code.casefold()

    def _read(self, concepts: Any, parent: str | None, edges: list[tuple[str, str]]) -> None:
        """Index nested concepts, collecting (parent, child) edges; iterative for deep trees."""
        stack = [(iter(_dicts(concepts)), parent)]
        while stack:
            items, parent = stack[-1]
            item = next(items, None)
            if item is None:
                stack.pop()
                continue
            if not isinstance(item.get("code"), str):
                continue
            concept = self._concept(item)
            self._concepts.setdefault(concept.key, concept)
            if parent is not None:
                edges.append((parent, concept.key))
            for prop in concept.properties:
                value = prop.get("valueCode")
                if isinstance(value, str) and prop.get("code") == PARENT:
                    edges.append((self.key(value), concept.key))
                elif isinstance(value, str) and prop.get("code") == CHILD:
                    edges.append((concept.key, self.key(value)))
            stack.append((iter(_dicts(item.get("concept"))), concept.key))

    def _concept(self, item: dict[str, Any]) -> Concept:
        properties, designations = _dicts(item.get("property")), _dicts(item.get("designation"))
        return Concept(
            code=item["code"],
            key=self.key(item["code"]),
            display=item.get("display"),
            definition=item.get("definition"),
            designations=designations,
            properties=properties,
            abstract=_flag(properties, "notSelectable", "abstract"),
            inactive=_inactive(properties),
        )

    def _link(self, edges: list[tuple[str, str]]) -> None:
        known = self._concepts
        for parent, child in edges:
            if parent == child or parent not in known or child not in known:
                continue
            siblings = self._children.setdefault(parent, [])
            if child not in siblings:
                siblings.append(child)
                self._parents.setdefault(child, []).append(parent)

    # -- reading --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._concepts)

    def __iter__(self) -> Iterator[Concept]:
        """Concepts in document order (depth first through nested concepts)."""
        return iter(self._concepts.values())

    def get(self, code: str) -> Concept | None:
        return self._concepts.get(self.key(code))

    def concept(self, key: str) -> Concept:
        """The concept stored under an index key (as returned by the hierarchy methods)."""
        return self._concepts[key]

    def parents(self, code: str) -> tuple[str, ...]:
        """Keys of the direct parents of `code`."""
        return tuple(self._parents.get(self.key(code), ()))

    def children(self, code: str) -> tuple[str, ...]:
        """Keys of the direct children of `code`."""
        return tuple(self._children.get(self.key(code), ()))

    @property
    def hierarchy(self) -> Hierarchy:
        """Reachability labels, built on first use."""
        if self._hierarchy is None:
            self._hierarchy = Hierarchy(self._concepts, self._parents, self._children)
        return self._hierarchy

    def ancestors(self, code: str) -> frozenset[str]:
        """Keys of every concept `code` is-a, itself excluded (memoised)."""
        key = self.key(code)
        found = self._ancestors.get(key)
        if found is None:
            seen: set[str] = set()
            todo = list(self._parents.get(key, ()))
            while todo:
                node = todo.pop()
                if node not in seen:
                    seen.add(node)
                    todo.extend(self._parents.get(node, ()))
            seen.discard(key)
            found = self._ancestors[key] = frozenset(seen)
        return found

    def descendants(self, code: str) -> frozenset[str]:
        """Keys of every concept that is-a `code`, itself excluded (memoised)."""
        key = self.key(code)
        found = self._descendants.get(key)
        if found is None:
            found = frozenset(self.hierarchy.descendants(key)) - {key}
            self._descendants[key] = found
        return found

    def is_a(self, code: str, ancestor: str) -> bool:
        """True when `code` is `ancestor` or one of its descendants."""
        key, other = self.key(code), self.key(ancestor)
        return key == other or self.hierarchy.below(key, other)

    def subsumption(self, code_a: str, code_b: str) -> str:
        """$subsumes outcome of A against B: equivalent, subsumes, subsumed-by, not-subsumed."""
        if self.key(code_a) == self.key(code_b):
            return "equivalent"
        if self.is_a(code_b, code_a):
            return "subsumes"
        if self.is_a(code_a, code_b):
            return "subsumed-by"
        return "not-subsumed"

    def ordered(self, keys: frozenset[str]) -> list[Concept]:
        """The concepts with these keys, in document order (unknown keys skipped)."""
        if len(keys) * 8 >= len(self._concepts):
            return [c for c in self._concepts.values() if c.key in keys]
        if self._position is None:
            self._position = {key: n for n, key in enumerate(self._concepts)}
        found = sorted((k for k in keys if k in self._position), key=self._position.__getitem__)
        return [self._concepts[k] for k in found]

    def codes(self, keys: frozenset[str] | set[str]) -> frozenset[str]:
        """The codes, as written in the CodeSystem, of a set of index keys."""
        if self.case_sensitive:
            return frozenset(keys)
        return frozenset(self._concepts[k].code for k in keys if k in self._concepts)
