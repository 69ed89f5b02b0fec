"""The walk: one pass over a resource's JSON, guided by the models' element metadata.

It collects one `Issue` per fault (at most `MAX_ISSUES`), each with a FHIRPath-style
location, and notes the parts the R4B models cannot take (nested structure-only resources,
R4-only elements and uuids, codes holding a Unicode space that R4 allows but the models'
Rust regex does not) for the deep check that may follow. Objects nested deeper than
`limits.LIMITS.max_depth` are refused, not walked.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Issue
from fhir_server.model.validation.limits import LIMITS
from fhir_server.model.validation.metadata import (
    DOMAIN_RESOURCE,
    EXTENSION,
    PRIMITIVE,
    PRIMITIVE_EXT,
    RESOURCE,
    Element,
    elements,
    is_resource_type,
    model_for,
    requirements,
    structure_for,
)
from fhir_server.model.validation.primitives import found

__all__ = ["MAX_ISSUES", "Loc", "Walk", "keys_of", "path_of"]

MAX_ISSUES = 100
_XSD_SPACE = frozenset(" \t\r\n")

# A location is a linked list, turned into text only when an issue needs it:
# (parent, Element or JSON key, index or None); the root is the resource type name.
Loc = tuple[Any, ...] | str


def path_of(loc: Loc) -> str:
    """`loc` as a FHIRPath-style location: `Observation.value.ofType(Quantity).value`."""
    steps: list[str] = []
    while isinstance(loc, tuple):
        loc, step, index = loc
        name = step.fhirpath if isinstance(step, Element) else step
        steps.append(name if index is None else f"{name}[{index}]")
    steps.append(loc)
    return ".".join(reversed(steps))


def keys_of(loc: Loc) -> list[str | int]:
    """The JSON keys and indexes that lead to `loc`."""
    keys: list[str | int] = []
    while isinstance(loc, tuple):
        loc, step, index = loc
        if index is not None:
            keys.append(index)
        keys.append(step.name if isinstance(step, Element) else step)
    return list(reversed(keys))


class Walk:
    """One check of a resource tree; `issues` holds what is wrong."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.structure_only: list[Loc] = []  # nested resources the models cannot check
        self.r4_only: list[Loc] = []  # R4-only elements and uuids, which R4B rejects
        self.spaced_codes: list[Loc] = []  # codes with a non-XSD space, which R4B rejects
        self.depth = 0

    def fail(self, loc: Loc, message: str, code: str = "structure") -> None:
        if len(self.issues) < MAX_ISSUES:
            path = path_of(loc)
            self.issues.append(Issue(f"{path}: {message}", code, "error", (path,)))

    def resource(self, data: Any, loc: Loc, top: bool = False) -> None:
        if type(data) is not dict:
            self.fail(loc, f"Expected a resource (a JSON object), found {found(data)}")
            return
        rtype = data.get("resourceType")
        if type(rtype) is not str or not rtype:
            self.fail(loc, "A resource needs a 'resourceType'", "required")
            return
        if not is_resource_type(rtype):
            self.fail(loc, f"'{rtype}' is not a FHIR R4 resource type", "not-supported")
            return
        model = model_for(rtype)
        if model is None:  # no R4B model: its R4 elements, from the core StructureDefinition
            self.object(data, structure_for(rtype) or DOMAIN_RESOURCE, loc, rtype)
            if not top:
                self.structure_only.append(loc)
        else:
            self.object(data, model, loc, rtype)

    def object(self, data: dict[str, Any], model: Any, loc: Loc, rtype: str | None = None) -> None:
        if self.depth >= LIMITS.max_depth:
            self.fail(
                loc, f"The resource nests objects more than {LIMITS.max_depth} deep", "too-long"
            )
            return
        self.depth += 1
        try:
            self.properties(data, model, loc, rtype)
        finally:
            self.depth -= 1

    def properties(self, data: dict[str, Any], model: Any, loc: Loc, rtype: str | None) -> None:
        fields = elements(model)
        choices: dict[str, str] | None = None
        for key, value in data.items():
            info = fields.get(key)
            if info is None:
                if key != "resourceType" or rtype is None:
                    self.fail((loc, key, None), f"Unknown element '{key}'")
                continue
            if info.choice is not None:
                choices = choices or {}
                other = choices.setdefault(info.choice, key)
                if other != key:
                    self.fail(
                        (loc, f"{info.choice}[x]", None),
                        f"Only one {info.choice}[x] is allowed, found '{other}' and '{key}'",
                        "invariant",
                    )
            if info.r4_only or info.type == "uuid":
                self.r4_only.append((loc, key, None))
            if value is None:
                self.fail((loc, info, None), "null is not allowed; omit the element")
            elif info.many:
                self.array(data, value, info, loc)
            elif type(value) is list:
                self.fail((loc, info, None), "Expected a single value, not an array")
            elif info.check is not None:
                self.primitive(value, info, (loc, info, None))
            else:
                self.node(value, info, (loc, info, None))
        self.required(data, model, loc, choices)

    def primitive(self, value: Any, info: Element, loc: Loc) -> None:
        assert info.check is not None
        problem = info.check(value)
        if problem is not None:
            self.fail(loc, problem, "value")
        elif (
            info.type == "code"
            and not value.isascii()
            and any(c.isspace() and c not in _XSD_SPACE for c in value)
        ):
            self.spaced_codes.append(loc)

    def required(
        self, data: dict[str, Any], model: Any, loc: Loc, choices: dict[str, str] | None
    ) -> None:
        singles, groups = requirements(model)
        for info in singles:
            if info.name not in data and "_" + info.name not in data:
                self.fail((loc, info, None), "A required element is missing", "required")
        for group in groups:
            if not choices or group not in choices:
                self.fail((loc, f"{group}[x]", None), "A required element is missing", "required")

    def array(self, data: dict[str, Any], value: Any, info: Element, loc: Loc) -> None:
        if type(value) is not list:
            self.fail((loc, info, None), "Expected an array (the element repeats)")
            return
        if not value:
            self.fail((loc, info, None), "Empty arrays are not allowed")
            return
        partner = None
        if info.kind == PRIMITIVE or info.kind == PRIMITIVE_EXT:
            # nulls line a value up with its extensions; the value array reports a double null
            name = info.name
            partner = data.get(name[1:] if name[0] == "_" else "_" + name)
            if partner is not None and (type(partner) is not list or len(partner) != len(value)):
                self.fail(
                    (loc, info, None),
                    f"'{name}' and its '_' partner must be arrays of the same length",
                )
                partner = None
        check = info.check
        for i, item in enumerate(value):
            if item is None:
                if partner is None or (partner[i] is None and info.kind == PRIMITIVE):
                    self.fail((loc, info, i), "null is not allowed here")
            elif check is not None:
                self.primitive(item, info, (loc, info, i))
            else:
                self.node(item, info, (loc, info, i))

    def node(self, value: Any, info: Element, loc: Loc) -> None:
        if info.kind == RESOURCE:
            self.resource(value, loc)
        elif type(value) is not dict:
            self.fail(loc, f"Expected a JSON object, found {found(value)}")
        elif not value:
            self.fail(loc, "Empty objects are not allowed")
        else:
            assert info.model is not None  # COMPLEX and PRIMITIVE_EXT elements have one
            self.object(value, info.model, loc)
            if info.model is EXTENSION and ("extension" in value) == any(
                k.startswith(("value", "_value"))
                for k in value  # a `_valueX` is a value too
            ):
                self.fail(
                    loc,
                    "An extension has either extensions or a value[x], not both (ext-1)",
                    "invariant",
                )
