"""A fast route for the commonest search expressions: plain member paths (`Patient.name.given`).

fhirpathpy is the FHIRPath engine; it costs 10 to 30 µs per evaluation, and a Patient has
some 25 indexed expressions. Nearly all of the R4 expressions are nothing but member access,
with equality filters on a primitive child (`Patient.telecom.where(system='phone')`) and
casts of a choice element (`(Observation.value as CodeableConcept).text`): those are followed
directly over the JSON, typed with the r4 model fhirpathpy ships, and give the
same (type, value) pairs as fhirpathpy (tests/unit/search/test_search_extract.py compares them for
every such expression). Anything else (other functions, operators...) returns None from
`compile_path` and goes to fhirpathpy.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fhirpathpy.models import models

from fhir_server.search.expressions import split_union

_MODEL = models["r4"]
_PATH2TYPE: dict[str, str] = _MODEL["path2Type"]
_CHOICES: dict[str, list[str]] = _MODEL["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = _MODEL["pathsDefinedElsewhere"]
_PRIMITIVES = frozenset(t for t in _PATH2TYPE.values() if t[:1].islower())
_BACKBONES = frozenset(p.rsplit(".", 1)[0] for p in _PATH2TYPE)
_SEGMENT = r"\.[a-z][A-Za-z0-9]*(?:\.where\(\s*[a-z][A-Za-z0-9]*\s*=\s*'[^'\\]*'\s*\))?"
_HEAD = rf"(?P<type>[A-Z][A-Za-z]+)(?P<path>(?:{_SEGMENT})+)"
_CAST = r"(?:\s+as\s+(?P<as1>[A-Za-z]+)|\.as\((?P<as2>[A-Za-z]+)\))"
_BARE = re.compile(
    rf"^{_HEAD}(?:\s+as\s+(?P<as1>[A-Za-z]+)|\.as\((?P<as2>[A-Za-z]+)\)"
    rf"(?P<rest>(?:{_SEGMENT})*))?$"
)  # Type.a.b, Type.a as T, Type.a.as(T).c
_GROUPED = re.compile(rf"^\(\s*{_HEAD}{_CAST}?\s*\)(?P<rest>(?:{_SEGMENT})*)$")  # (Type.a as T).c
_STEP = re.compile(
    r"\.(?P<name>[a-z][A-Za-z0-9]*)"
    r"(?:\.where\(\s*(?P<field>[a-z][A-Za-z0-9]*)\s*=\s*'(?P<literal>[^'\\]*)'\s*\))?"
)

Keys = tuple[tuple[str, str | None], ...]  # (JSON key, FHIR type or None) alternatives
Filter = tuple[str, str] | None  # keep items whose primitive `field` equals `literal`
Step = tuple[Keys, Filter]


class MemberPath:
    """A compiled plain path: call it on a resource for its (FHIR type, value) pairs."""

    __slots__ = ("expression", "steps")

    def __init__(self, expression: str, steps: list[Step]) -> None:
        self.expression, self.steps = expression, steps

    def __call__(self, resource: dict[str, Any]) -> list[tuple[str | None, Any]]:
        return _walk(resource, self.steps)


def compile_path(expression: str) -> MemberPath | None:
    """An evaluator giving (FHIR type, value) pairs, or None if `expression` is not plain."""
    text = expression.strip()
    found = _GROUPED.match(text) or _BARE.match(text)
    if found is None:
        return None
    head = _parts(found["path"])
    rest = _parts(found["rest"] or "")
    steps = _steps(found["type"], head, found["as1"] or found["as2"], rest)
    if steps is None:
        return None
    return MemberPath(expression, steps)


Part = tuple[str, str | None, str | None]  # element name, filter field, filter literal


def _parts(path: str) -> list[Part]:
    return [(m["name"], m["field"], m["literal"]) for m in _STEP.finditer(path)]


def _steps(type: str, head: list[Part], cast: str | None, rest: list[Part]) -> list[Step] | None:
    """The steps of `head`, cast to `cast` at its last element (a choice), then of `rest`."""
    steps: list[Step] = []
    at = type
    parts = head + rest
    for i, (name, field, literal) in enumerate(parts):
        path = f"{at}.{name}"
        cast_here = cast if i == len(head) - 1 else None
        if path in _CHOICES:
            options = [c for c in _CHOICES[path] if cast_here is None or _type_name(c) == cast_here]
            if field is not None or not options or (i < len(parts) - 1 and cast_here is None):
                return None
            keys = tuple((name + c[0].upper() + c[1:], _type_name(c)) for c in options)
            steps.append((keys, None))
            at = _type_name(options[0])
            continue
        if cast_here is not None:
            return None  # `as` on an element that is not a choice: leave it to fhirpathpy
        if path in _PATH2TYPE:
            fhir_type = _PATH2TYPE[path]
            if fhir_type == "Resource":
                return None  # fhirpathpy types a contained resource by its resourceType
            at = path if fhir_type in ("BackboneElement", "Element") else fhir_type
            step_keys: Keys = ((name, None if at == path else fhir_type),)
        elif path in _ELSEWHERE or path in _BACKBONES:
            at = _ELSEWHERE.get(path, path)
            step_keys = ((name, None),)
        else:
            return None
        if field is not None and not _is_primitive(f"{at}.{field}"):
            return None
        where: Filter = (field, literal) if field is not None and literal is not None else None
        steps.append((step_keys, where))
    return steps


def _is_primitive(path: str) -> bool:
    fhir_type = _PATH2TYPE.get(path, "")
    return fhir_type in _PRIMITIVES or fhir_type.startswith("System.")


def _type_name(choice: str) -> str:
    lowered = choice[0].lower() + choice[1:]
    return lowered if lowered in _PRIMITIVES else choice


def _walk(resource: dict[str, Any], steps: list[Step]) -> list[tuple[str | None, Any]]:
    items: list[tuple[str | None, Any]] = [(None, resource)]
    for keys, where in steps:
        following: list[tuple[str | None, Any]] = []
        for _, item in items:
            if not isinstance(item, dict):
                continue
            for key, fhir_type in keys:
                value = item.get(key)
                if value is None:
                    continue
                if isinstance(value, list):
                    following.extend((fhir_type, v) for v in value if v is not None)
                else:
                    following.append((fhir_type, value))
        if where is not None:
            field, literal = where
            following = [
                (t, v) for t, v in following if isinstance(v, dict) and v.get(field) == literal
            ]
        if not following:
            return []
        items = following
    return items


class UnionPath:
    """Paths joined by a FHIRPath union (`value.as(Quantity) | value.as(Range)`).

    As fhirpathpy's `|` (`distinct`): the values of every branch in order, duplicates (same
    JSON) dropped, and untyped (fhirpathpy makes new nodes without their paths)."""

    __slots__ = ("expression", "parts")

    def __init__(self, expression: str, parts: list[MemberPath | None]) -> None:
        self.expression, self.parts = expression, parts

    def __call__(self, element: dict[str, Any]) -> list[tuple[str | None, Any]]:
        values = [value for part in self.parts if part is not None for _, value in part(element)]
        if len(values) < 2:
            return [(None, value) for value in values]
        unique: dict[str, Any] = {}
        for value in values:
            try:
                key = json.dumps(value, sort_keys=True)
            except TypeError:
                key = str(value)
            unique[key] = value
        return [(None, value) for value in unique.values()]


def compile_relative(context: str, expression: str) -> MemberPath | UnionPath | None:
    """`expression` (e.g. `code`, `value.as(Quantity)`) evaluated from an element at `context`.

    `context` is the path fhirpathpy gives the element (`Observation`, `Observation.component`);
    the result gives the same (FHIR type, value) pairs as fhirpathpy on a node of that path,
    or is None when the expression is not a plain path (then fhirpathpy evaluates it).
    A union branch casting a choice to a type it does not have (`value.as(DateTime)`: FHIR
    names it `dateTime`) selects nothing, as in fhirpathpy.
    """
    if "%" in expression:
        return None
    branches = split_union(expression)
    parts: list[MemberPath | None] = []
    for branch in branches:
        found = _BARE.match("Ctx." + branch.strip())
        if found is None:
            return None
        head, cast = _parts(found["path"]), found["as1"] or found["as2"]
        rest = _parts(found["rest"] or "")
        steps = _steps(context, head, cast, rest)
        if steps is None:
            if len(branches) > 1 and _casts_to_nothing(context, head, cast, rest):
                parts.append(None)
                continue
            return None
        parts.append(MemberPath(branch, steps))
    if len(parts) == 1:
        return parts[0]
    return UnionPath(expression, parts) if any(parts) else None


def _casts_to_nothing(context: str, head: list[Part], cast: str | None, rest: list[Part]) -> bool:
    """`choice.as(T)` where the choice element has no type named T."""
    if cast is None or rest or len(head) != 1 or head[0][1] is not None:
        return False
    choices = _CHOICES.get(f"{context}.{head[0][0]}", [])
    return bool(choices) and all(_type_name(c) != cast for c in choices)
