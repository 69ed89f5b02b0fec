"""The terminology registry: core R4 content plus the server's own, and the operations on them.

Resources `put` by the server (created or updated through REST) take precedence over the
shipped core content with the same canonical url; `remove` takes them away again. A
canonical may carry `|version` (https://hl7.org/fhir/R4/references.html#canonical); without a
version the most recently put resource wins, then the core one.

CodeSystem indexes and value set expansions are built on first use and cached; any put or
remove drops the cached expansions (they may depend on what changed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_server.errors import BadRequest, FhirError, NotFound, Unprocessable
from terminology import lookup as lookups
from terminology.codesystem import CodeSystemIndex
from terminology.compose import UNKNOWN, Item, Verdict, expand_items, membership
from terminology.content import KINDS, load_core
from terminology.expand import ExpandParams, expand
from terminology.translate import translate
from terminology.validate import codings_of, validate_in_system, validate_in_value_set

Resource = dict[str, Any]


def _by_url(resources: list[Resource]) -> dict[str, list[Resource]]:
    """Resources by canonical url; a url written `base|version` is filed under `base`."""
    out: dict[str, list[Resource]] = {}
    for resource in resources:
        if isinstance(resource.get("url"), str):
            out.setdefault(resource["url"].split("|")[0], []).append(resource)
    return out


def _pick(found: list[Resource], version: str | None) -> Resource | None:
    """The resource of that version (the `version` element or the url's `|version`), or,
    with no version asked, the last one whose url carries no version."""
    if version is not None:
        found = [r for r in found if version in (r.get("version"), r["url"].partition("|")[2])]
    else:
        found = [r for r in found if "|" not in r["url"]] or found
    return found[-1] if found else None


def _split(url: str, version: str | None) -> tuple[str, str | None]:
    if version is None and "|" in url:
        url, version = url.split("|", 1)
    return url, version


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"Parameter '{name}' must be a non-empty string")
    return value


class Terminology:
    """CodeSystems, ValueSets and ConceptMaps by canonical url, and the terminology operations."""

    def __init__(self, include_core: bool = True) -> None:
        core = load_core() if include_core else {kind: [] for kind in KINDS}
        self._core = {kind: _by_url(core[kind]) for kind in KINDS}
        self._local: dict[tuple[str, str], Resource] = {}
        self._local_by_url: dict[str, dict[str, list[Resource]]] = {kind: {} for kind in KINDS}
        self._indexes: dict[int, tuple[Resource, CodeSystemIndex]] = {}
        self._expansions: dict[int, tuple[Resource, list[Item]]] = {}

    # -- content ----------------------------------------------------------------------------

    def put(self, resource: Resource) -> None:
        """Add or replace (same type and id) a CodeSystem, ValueSet or ConceptMap."""
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if kind not in KINDS or not isinstance(resource.get("id"), str):
            raise BadRequest(
                "Terminology content must be a CodeSystem, ValueSet or ConceptMap with an id"
            )
        self._drop(kind, resource["id"])
        self._local[(kind, resource["id"])] = resource
        self._reindex(kind)

    def remove(self, resource_type: str, id: str) -> None:
        """Forget a resource that was put; unknown ones are ignored."""
        if self._drop(resource_type, id):
            self._reindex(resource_type)

    def _drop(self, kind: str, rid: str) -> bool:
        old = self._local.pop((kind, rid), None)
        if old is not None:
            self._indexes.pop(_identity(old), None)
        return old is not None

    def _reindex(self, kind: str) -> None:
        local = [r for (k, _), r in self._local.items() if k == kind]
        self._local_by_url[kind] = _by_url(local)
        self._expansions.clear()

    def _find(self, kind: str, url: Any, version: str | None) -> Resource | None:
        if not isinstance(url, str):
            return None
        url, version = _split(url, version)
        for pool in (self._local_by_url[kind], self._core[kind]):
            found = _pick(pool.get(url, []), version)
            if found is not None:
                return found
        return None

    def resources(self, resource_type: str) -> list[Resource]:
        """Every resource of a type in effect: the server's own, then core ones not shadowed."""
        local = self._local_by_url.get(resource_type, {})
        core = self._core.get(resource_type, {})
        mine = [r for (k, _), r in self._local.items() if k == resource_type]
        return mine + [r for url, rs in core.items() if url not in local for r in rs]

    def code_system(self, url: str, version: str | None = None) -> CodeSystemIndex | None:
        resource = self._find("CodeSystem", url, version)
        if resource is None:
            return None
        cached = self._indexes.get(_identity(resource))
        if cached is None:
            cached = self._indexes[_identity(resource)] = (resource, CodeSystemIndex(resource))
        return cached[1]

    def value_set(self, url: str, version: str | None = None) -> Resource | None:
        return self._find("ValueSet", url, version)

    def concept_map(self, url: str, version: str | None = None) -> Resource | None:
        return self._find("ConceptMap", url, version)

    # -- compose.Resolver -------------------------------------------------------------------

    def items(self, url: str, seen: tuple[str, ...] = ()) -> list[Item]:
        """The (cached) expansion items of a value set known by url; NotFound if unknown."""
        value_set = self._value_set_or_404(url)
        cached = self._expansions.get(_identity(value_set))
        if cached is not None:
            return cached[1]
        if url in seen:
            raise Unprocessable(f"ValueSet {url} includes itself")
        items = expand_items(value_set, self, (*seen, url))
        self._expansions[_identity(value_set)] = (value_set, items)
        return items

    def membership(
        self, url: str, system: str | None, code: str, seen: tuple[str, ...] = ()
    ) -> Verdict:
        value_set = self.value_set(url)
        if value_set is None:
            return UNKNOWN
        if url in seen:
            raise Unprocessable(f"ValueSet {url} includes itself")
        return membership(value_set, self, system, code, (*seen, url))

    # -- operations -------------------------------------------------------------------------

    def _system_or_404(self, system: Any, version: str | None) -> CodeSystemIndex:
        index = self.code_system(_text("system", system), version)
        if index is None:
            label = f"{system}|{version}" if version else system
            raise NotFound(f"Unknown code system {label}")
        return index

    def _value_set_or_404(self, url: str) -> Resource:
        value_set = self.value_set(_text("url", url))
        if value_set is None:
            raise NotFound(f"Unknown value set {url}")
        return value_set

    def _value_set_arg(self, value_set: Resource | str) -> Resource:
        if isinstance(value_set, dict):
            if value_set.get("resourceType", "ValueSet") != "ValueSet":
                raise BadRequest("valueSet must be a ValueSet resource")
            return value_set
        return self._value_set_or_404(value_set)

    def lookup(
        self,
        system: str,
        code: str,
        *,
        version: str | None = None,
        properties: Sequence[str] = (),
        display_language: str | None = None,
    ) -> Resource:
        index = self._system_or_404(system, version)
        return lookups.lookup(index, _text("code", code), properties, display_language)

    def validate_code_in_system(
        self, system: str, code: str, *, version: str | None = None, display: str | None = None
    ) -> Resource:
        index = self._system_or_404(system, version)
        return validate_in_system(index, _text("code", code), display)

    def subsumes(
        self, system: str, code_a: str, code_b: str, *, version: str | None = None
    ) -> Resource:
        index = self._system_or_404(system, version)
        return lookups.subsumes(index, _text("codeA", code_a), _text("codeB", code_b))

    def expand(
        self,
        value_set: Resource | str,
        *,
        filter: str | None = None,
        count: int | None = None,
        offset: int = 0,
        active_only: bool = False,
        include_designations: bool = False,
        display_language: str | None = None,
    ) -> Resource:
        resource = self._value_set_arg(value_set)
        params = ExpandParams(
            filter, count, offset, active_only, include_designations, display_language
        )
        params.check()
        items = (
            self.items(value_set) if isinstance(value_set, str) else expand_items(resource, self)
        )
        return expand(resource, items, params)

    def validate_code_in_value_set(
        self,
        value_set: Resource | str,
        *,
        code: str | None = None,
        system: str | None = None,
        version: str | None = None,
        display: str | None = None,
        coding: Resource | None = None,
        codeable_concept: Resource | None = None,
    ) -> Resource:
        resource = self._value_set_arg(value_set)
        codings = codings_of(code, system, version, display, coding, codeable_concept)
        return validate_in_value_set(resource, self, codings)

    def translate(
        self,
        *,
        code: str,
        system: str,
        concept_map: Resource | str | None = None,
        source: str | None = None,
        target: str | None = None,
        target_system: str | None = None,
        reverse: bool = False,
    ) -> Resource:
        maps = self._maps(concept_map, source, target, reverse)
        return translate(
            maps,
            _text("code", code),
            _text("system", system),
            target_system,
            reverse,
            self._display,
        )

    def _display(self, system: str, code: str) -> str | None:
        index = self.code_system(system)
        concept = index.get(code) if index is not None else None
        return concept.display if concept is not None else None

    def _maps(
        self,
        concept_map: Resource | str | None,
        source: str | None,
        target: str | None,
        reverse: bool,
    ) -> list[Resource]:
        if isinstance(concept_map, dict):
            if concept_map.get("resourceType", "ConceptMap") != "ConceptMap":
                raise BadRequest("conceptMap must be a ConceptMap resource")
            return [concept_map]
        if concept_map is not None:
            found = self.concept_map(_text("url", concept_map))
            if found is None:
                raise NotFound(f"Unknown concept map {concept_map}")
            return [found]
        here, there = ("target", "source") if reverse else ("source", "target")
        return [
            m
            for m in self.resources("ConceptMap")
            if _scoped(m, here, source) and _scoped(m, there, target)
        ]

    # -- helpers for search and binding validation -------------------------------------------

    def codes_in(self, value_set_url: str) -> frozenset[tuple[str, str]]:
        return frozenset((i.system, i.code) for i in self.items(value_set_url))

    def codes_below(self, system: str, code: str) -> frozenset[str]:
        index = self._system_or_404(system, None)
        concept = lookups.concept_or_404(index, code)
        return index.codes(index.descendants(concept.key) | {concept.key})

    def codes_above(self, system: str, code: str) -> frozenset[str]:
        index = self._system_or_404(system, None)
        concept = lookups.concept_or_404(index, code)
        return index.codes(index.ancestors(concept.key) | {concept.key})

    def contains(self, value_set_url: str, system: str | None, code: str) -> bool | None:
        value_set = self.value_set(value_set_url) if isinstance(value_set_url, str) else None
        if value_set is None or not isinstance(code, str):
            return None
        try:
            return membership(value_set, self, system, code, (value_set_url,)).member
        except FhirError:
            return None


def _identity(resource: Resource) -> int:
    return id(resource)


def _scoped(concept_map: Resource, side: str, url: str | None) -> bool:
    """Whether the map's source (or target) value set is `url` (any, when url is None)."""
    if url is None:
        return True
    scope = concept_map.get(f"{side}Canonical") or concept_map.get(f"{side}Uri")
    return isinstance(scope, str) and scope.split("|")[0] == url.split("|")[0]
