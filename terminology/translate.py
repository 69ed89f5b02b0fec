"""ConceptMap $translate.

https://hl7.org/fhir/R4/conceptmap-operation-translate.html: "Translate a code from one value
set to another, based on the existing value set and concept maps resources". Out: `result`
("True if the concept could be translated successfully. The value can only be true if at
least one returned match has an equivalence which is not unmatched or disjoint"), `message`,
and one `match` per mapping with `equivalence`, `concept` (the Coding) and `source` (the
ConceptMap's url).

`reverse` maps from a target back to its sources. ConceptMapEquivalence is read "from target
to source" (https://hl7.org/fhir/R4/valueset-concept-map-equivalence.html), so a reversed
match turns wider into narrower and subsumes into specializes, and back.
`group.unmapped` is honoured for forward translations with mode `provided` (the same code in
the target system, equivalence `equal`) and `fixed` (the given code, equivalence `inexact`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from terminology.parameters import optional, param, parameters, part

FAILED = frozenset({"unmatched", "disjoint"})
_REVERSED = {
    "wider": "narrower",
    "narrower": "wider",
    "subsumes": "specializes",
    "specializes": "subsumes",
}


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _coding(system: Any, version: Any, code: Any, display: Any) -> dict[str, Any]:
    coding = {"system": system, "version": version, "code": code, "display": display}
    return {k: v for k, v in coding.items() if isinstance(v, str)}


def _forward(group: dict[str, Any], code: str) -> Iterator[tuple[str, dict[str, Any]]]:
    found = False
    for element in _list(group.get("element")):
        if element.get("code") != code:
            continue
        for target in _list(element.get("target")) or [{"equivalence": "unmatched"}]:
            found = True
            concept = _coding(
                group.get("target"),
                group.get("targetVersion"),
                target.get("code"),
                target.get("display"),
            )
            yield target.get("equivalence", "equivalent"), concept
    if not found:
        yield from _unmapped(group, code)


def _unmapped(group: dict[str, Any], code: str) -> Iterator[tuple[str, dict[str, Any]]]:
    unmapped = group.get("unmapped")
    if not isinstance(unmapped, dict):
        return
    system, version = group.get("target"), group.get("targetVersion")
    if unmapped.get("mode") == "provided":
        yield "equal", _coding(system, version, code, None)
    elif unmapped.get("mode") == "fixed" and isinstance(unmapped.get("code"), str):
        yield "inexact", _coding(system, version, unmapped["code"], unmapped.get("display"))


def _backward(group: dict[str, Any], code: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for element in _list(group.get("element")):
        for target in _list(element.get("target")):
            if target.get("code") != code:
                continue
            equivalence = target.get("equivalence", "equivalent")
            concept = _coding(
                group.get("source"),
                group.get("sourceVersion"),
                element.get("code"),
                element.get("display"),
            )
            yield _REVERSED.get(equivalence, equivalence), concept


def _groups(
    concept_map: dict[str, Any], system: str, target_system: str | None, reverse: bool
) -> Iterator[dict[str, Any]]:
    here, there = ("target", "source") if reverse else ("source", "target")
    for group in _list(concept_map.get("group")):
        if group.get(here) not in (None, system):
            continue
        if target_system is not None and group.get(there) != target_system:
            continue
        yield group


def matches(
    concept_map: dict[str, Any], code: str, system: str, target_system: str | None, reverse: bool
) -> list[tuple[str, dict[str, Any]]]:
    """(equivalence, Coding) pairs the map gives for system#code."""
    walk = _backward if reverse else _forward
    return [m for g in _groups(concept_map, system, target_system, reverse) for m in walk(g, code)]


Describe = Callable[[str, str], "str | None"]


def translate(
    concept_maps: list[dict[str, Any]],
    code: str,
    system: str,
    target_system: str | None,
    reverse: bool,
    describe: Describe | None = None,
) -> dict[str, Any]:
    """The $translate Parameters over the chosen concept maps.

    `describe(system, code)` supplies the display of a mapped concept the map leaves without.
    """
    found = []
    for concept_map in concept_maps:
        source = concept_map.get("url")
        for equivalence, concept in matches(concept_map, code, system, target_system, reverse):
            parts = [param("equivalence", "Code", equivalence)]
            if concept.get("code"):
                if describe and "display" not in concept and "system" in concept:
                    display = describe(concept["system"], concept["code"])
                    concept.update({"display": display} if display else {})
                parts.append(param("concept", "Coding", concept))
            if isinstance(source, str):
                parts.append(param("source", "Uri", source))
            found.append((equivalence, part("match", *parts)))
    ok = any(equivalence not in FAILED for equivalence, _ in found)
    message = None if ok else f"No mapping found for code '{code}' in system {system}"
    return parameters(
        param("result", "Boolean", ok),
        optional("message", "String", message),
        *(match for _, match in found),
    )
