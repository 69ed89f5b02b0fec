"""ValueSet.compose: the codes a value set holds, enumerated or tested one code at a time.

https://hl7.org/fhir/R4/valueset.html#compositions: "If there are multiple include
statements, the value set contains the union of the codes selected by each; exclude
statements remove codes from that union. Within one include, the selections by system (all
codes, an enumerated list, or filters that SHALL all be true) and by `valueSet` are
intersected." A system that must be enumerated but is unknown, or whose content is
`not-present`, makes the expansion fail rather than come back partial.

Membership answers three ways: True, False, or None when the answer depends on a code
system (or value set) this server does not hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

from fhir_server.errors import BadRequest, NotFound, Unprocessable
from terminology.codesystem import CodeSystemIndex, Concept
from terminology.filters import compile_filters, passes, select


@dataclass(frozen=True, slots=True)
class Item:
    """One code of an expansion, with what `contains` reports about it."""

    system: str
    code: str
    version: str | None = None
    display: str | None = None
    designations: tuple[dict[str, Any], ...] = ()
    abstract: bool = False
    inactive: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a code is in a value set (None: cannot tell), with the item when it is."""

    member: bool | None
    item: Item | None = None


NO, UNKNOWN = Verdict(False), Verdict(None)


class Resolver(Protocol):
    """What compose evaluation needs from the registry."""

    def code_system(self, url: str, version: str | None = None) -> CodeSystemIndex | None: ...

    def items(self, url: str, seen: tuple[str, ...]) -> list[Item]: ...

    def membership(
        self, url: str, system: str | None, code: str, seen: tuple[str, ...]
    ) -> Verdict: ...


def concept_item(index: CodeSystemIndex, concept: Concept) -> Item:
    return Item(
        index.url,
        concept.code,
        index.version,
        concept.display,
        concept.designations,
        concept.abstract,
        concept.inactive,
    )


# -- enumeration ---------------------------------------------------------------------------


def expand_items(
    value_set: dict[str, Any], resolver: Resolver, seen: tuple[str, ...] = ()
) -> list[Item]:
    """Every code of the value set, once each, in the order the compose names them."""
    compose = value_set.get("compose")
    if isinstance(compose, dict):
        return _compose_items(compose, resolver, seen)
    expansion = value_set.get("expansion")
    if isinstance(expansion, dict):
        return list(_unique(_contains_items(expansion.get("contains"))))
    raise Unprocessable(f"ValueSet {value_set.get('url', '')} has neither compose nor expansion")


def _compose_items(
    compose: dict[str, Any], resolver: Resolver, seen: tuple[str, ...]
) -> list[Item]:
    items = _unique(i for inc in _parts(compose, "include") for i in _include(inc, resolver, seen))
    dropped = {
        (i.system, i.code)
        for exc in _parts(compose, "exclude")
        for i in _include(exc, resolver, seen)
    }
    return [i for i in items if (i.system, i.code) not in dropped]


def _parts(compose: dict[str, Any], name: str) -> list[dict[str, Any]]:
    parts = compose.get(name) or []
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise BadRequest(f"ValueSet.compose.{name} must be a list of objects")
    return parts


def _unique(items: Iterable[Item]) -> Iterator[Item]:
    seen: set[tuple[str, str]] = set()
    for item in items:
        if (item.system, item.code) not in seen:
            seen.add((item.system, item.code))
            yield item


def _imports(inc: dict[str, Any]) -> list[str]:
    urls = inc.get("valueSet") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise BadRequest("ValueSet.compose.include.valueSet must be a list of canonical urls")
    return urls


def _include(inc: dict[str, Any], resolver: Resolver, seen: tuple[str, ...]) -> list[Item]:
    imported = [resolver.items(url, seen) for url in _imports(inc)]
    if inc.get("system") is not None:
        items = _system_items(inc, resolver)
    elif imported:
        items, imported = imported[0], imported[1:]
    else:
        raise BadRequest("ValueSet.compose.include needs a system or a valueSet")
    for other in imported:
        keys = {(i.system, i.code) for i in other}
        items = [i for i in items if (i.system, i.code) in keys]
    return items


def _system_items(inc: dict[str, Any], resolver: Resolver) -> list[Item]:
    system, version = _system(inc)
    concepts = inc.get("concept")
    index = resolver.code_system(system, version)
    if concepts and not inc.get("filter"):
        return [_listed_item(system, version, c, index) for c in _listed(concepts)]
    index = _enumerable(system, version, index)
    chosen = select(index, compile_filters(index, inc.get("filter") or []))
    if concepts:
        listed = {index.key(c["code"]) for c in _listed(concepts)}
        chosen = [c for c in chosen if c.key in listed]
    return [concept_item(index, c) for c in chosen]


def _system(inc: dict[str, Any]) -> tuple[str, str | None]:
    system, version = inc.get("system"), inc.get("version")
    if not isinstance(system, str) or not (version is None or isinstance(version, str)):
        raise BadRequest("ValueSet.compose.include.system and .version must be strings")
    return system, version


def _listed(concepts: Any) -> list[dict[str, Any]]:
    if not isinstance(concepts, list) or not all(
        isinstance(c, dict) and isinstance(c.get("code"), str) for c in concepts
    ):
        raise BadRequest("ValueSet.compose.include.concept must be a list of {code, display}")
    return concepts


def _listed_item(
    system: str, version: str | None, listed: dict[str, Any], index: CodeSystemIndex | None
) -> Item:
    """A listed concept: its own display and designations first, the code system's after."""
    concept = index.get(listed["code"]) if index is not None else None
    item = Item(
        system,
        listed["code"],
        version or (index.version if index else None),
        listed.get("display"),
        tuple(listed.get("designation") or ()),
    )
    if concept is None:
        return item
    return replace(
        item,
        display=item.display or concept.display,
        designations=item.designations or concept.designations,
        abstract=concept.abstract,
        inactive=concept.inactive,
    )


def _enumerable(system: str, version: str | None, index: CodeSystemIndex | None) -> CodeSystemIndex:
    label = f"{system}|{version}" if version else system
    if index is None:
        raise NotFound(f"Cannot expand: code system {label} is not known to this server")
    if index.content == "not-present":
        raise Unprocessable(
            f"Cannot expand: code system {label} has no concepts here (content not-present)"
        )
    return index


def _contains_items(contains: Any) -> Iterator[Item]:
    """Items of a stored expansion, nested `contains` flattened."""
    for entry in contains if isinstance(contains, list) else ():
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("system"), str) and isinstance(entry.get("code"), str):
            yield Item(
                entry["system"],
                entry["code"],
                entry.get("version"),
                entry.get("display"),
                tuple(entry.get("designation") or ()),
                entry.get("abstract") is True,
                entry.get("inactive") is True,
            )
        yield from _contains_items(entry.get("contains"))


# -- membership ----------------------------------------------------------------------------


def membership(
    value_set: dict[str, Any],
    resolver: Resolver,
    system: str | None,
    code: str,
    seen: tuple[str, ...] = (),
) -> Verdict:
    """Whether (system, code) is in the value set; `system` None matches any system."""
    compose = value_set.get("compose")
    if not isinstance(compose, dict):
        return _from_items(expand_items(value_set, resolver, seen), system, code)
    found = _any(
        _include_verdict(inc, resolver, system, code, seen) for inc in _parts(compose, "include")
    )
    if not found.member or found.item is None:
        return found
    out = _any(
        _include_verdict(exc, resolver, found.item.system, found.item.code, seen)
        for exc in _parts(compose, "exclude")
    )
    if out.member is None:
        return UNKNOWN
    return NO if out.member else found


def _from_items(items: list[Item], system: str | None, code: str) -> Verdict:
    for item in items:
        if item.code == code and system in (None, item.system):
            return Verdict(True, item)
    return NO


def _any(verdicts: Iterable[Verdict]) -> Verdict:
    """Union: the first True, else None if any could not tell, else False."""
    unknown = False
    for verdict in verdicts:
        if verdict.member:
            return verdict
        unknown = unknown or verdict.member is None
    return UNKNOWN if unknown else NO


def _include_verdict(
    inc: dict[str, Any], resolver: Resolver, system: str | None, code: str, seen: tuple[str, ...]
) -> Verdict:
    """Intersection of the system part and every imported value set."""
    urls = _imports(inc)
    if inc.get("system") is not None:
        found = _system_verdict(inc, resolver, system, code)
    elif urls:
        found, urls = resolver.membership(urls[0], system, code, seen), urls[1:]
    else:
        raise BadRequest("ValueSet.compose.include needs a system or a valueSet")
    for url in urls:
        if found.member is False or found.item is None:
            break
        other = resolver.membership(url, found.item.system, found.item.code, seen)
        found = found if other.member else other
    return found


def _system_verdict(
    inc: dict[str, Any], resolver: Resolver, system: str | None, code: str
) -> Verdict:
    url, version = _system(inc)
    if system is not None and system != url:
        return NO
    index = resolver.code_system(url, version)
    if inc.get("concept"):
        key = index.key if index is not None else str
        listed = next((c for c in _listed(inc["concept"]) if key(c["code"]) == key(code)), None)
        if listed is None:
            return NO
        if not inc.get("filter"):
            return Verdict(True, _listed_item(url, version, listed, index))
    if index is None or index.content == "not-present":
        return UNKNOWN
    concept = index.get(code)
    if concept is None:
        return NO if index.content == "complete" else UNKNOWN
    if not passes(concept, compile_filters(index, inc.get("filter") or [])):
        return NO
    return Verdict(True, concept_item(index, concept))
