"""CodeSystem $lookup and $subsumes on an indexed code system.

https://hl7.org/fhir/R4/codesystem-operation-lookup.html: "Given a code/system, or a Coding,
get additional details about the concept, including definition, status, designations, and
properties." Returned: name, version, display, definition, designation (language, use, value)
and property (code, value, description).

Properties: with no `property` asked for, every property of the concept is returned together
with `parent` and `child`, read from the hierarchy (nesting and parent/child properties
alike), as HAPI does; with a list, only the properties named (designations only if
`designation` is named).

https://hl7.org/fhir/R4/codesystem-operation-subsumes.html: "Test the subsumption
relationship between code/Coding A and code/Coding B given the semantics of subsumption in
the underlying code system" -> outcome equivalent | subsumes | subsumed-by | not-subsumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_server.errors import NotFound
from terminology.codesystem import CHILD, PARENT, CodeSystemIndex, Concept
from terminology.parameters import optional, param, parameters, part

_HIERARCHY = (PARENT, CHILD)


def display_in(
    language: str | None, display: str | None, designations: Sequence[dict[str, Any]]
) -> str | None:
    """The display in `language` when a designation gives one (exact tag, then base language)."""
    if not language or not isinstance(language, str):
        return display
    wanted = language.lower()
    tagged = [(str(d.get("language", "")).lower(), d.get("value")) for d in designations]
    for tag, value in tagged:
        if tag == wanted and isinstance(value, str):
            return value
    base = wanted.split("-")[0]
    for tag, value in tagged:
        if tag.split("-")[0] == base and isinstance(value, str):
            return value
    return display


def concept_or_404(index: CodeSystemIndex, code: str) -> Concept:
    concept = index.get(code)
    if concept is None:
        raise NotFound(f"Unknown code '{code}' in code system {index.url}")
    return concept


def lookup(
    index: CodeSystemIndex,
    code: str,
    properties: Sequence[str] = (),
    display_language: str | None = None,
) -> dict[str, Any]:
    """The $lookup Parameters for `code`; NotFound when the system does not define it."""
    concept = concept_or_404(index, code)
    wanted = (
        {properties}
        if isinstance(properties, str)
        else {p for p in properties if isinstance(p, str)}
    )
    return parameters(
        optional("name", "String", index.name),
        optional("version", "String", index.version),
        optional(
            "display", "String", display_in(display_language, concept.display, concept.designations)
        ),
        optional("definition", "String", concept.definition),
        *(_designations(concept) if not wanted or "designation" in wanted else ()),
        *_properties(index, concept, wanted),
    )


def _designations(concept: Concept) -> list[dict[str, Any]]:
    out = []
    for designation in concept.designations:
        parts = [
            optional("language", "Code", designation.get("language")),
            optional("use", "Coding", designation.get("use")),
            optional("value", "String", designation.get("value")),
        ]
        out.append(part("designation", *(p for p in parts if p is not None)))
    return out


def _properties(index: CodeSystemIndex, concept: Concept, wanted: set[str]) -> list[dict[str, Any]]:
    out = [
        _property(prop)
        for prop in concept.properties
        if prop.get("code") not in _HIERARCHY and (not wanted or prop.get("code") in wanted)
    ]
    for name in _HIERARCHY:
        if wanted and name not in wanted:
            continue
        links = index.parents if name == PARENT else index.children
        for key in links(concept.code):
            linked = index.concept(key)
            out.append(
                part(
                    "property",
                    param("code", "Code", name),
                    param("value", "Code", linked.code),
                    *([param("description", "String", linked.display)] if linked.display else []),
                )
            )
    if "inactive" in wanted and not any(p.get("code") == "inactive" for p in concept.properties):
        out.append(
            part(
                "property",
                param("code", "Code", "inactive"),
                param("value", "Boolean", concept.inactive),
            )
        )
    return out


def _property(prop: dict[str, Any]) -> dict[str, Any]:
    parts = [param("code", "Code", prop.get("code"))]
    parts += [{"name": "value", k: v} for k, v in prop.items() if k.startswith("value")]
    return part("property", *parts)


def subsumes(index: CodeSystemIndex, code_a: str, code_b: str) -> dict[str, Any]:
    """The $subsumes Parameters: the outcome of A against B."""
    concept_or_404(index, code_a)
    concept_or_404(index, code_b)
    return parameters(param("outcome", "Code", index.subsumption(code_a, code_b)))
