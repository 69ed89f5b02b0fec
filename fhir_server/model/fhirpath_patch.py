"""FHIRPath Patch and JSON Patch: the body of a FHIR patch interaction applied to a resource.

https://hl7.org/fhir/R4/fhirpatch.html -- a Parameters resource, one `operation` parameter
per change, applied in order, "each operation applied to the result of the previous patch
operation". Rules quoted from the page: "The FHIRPath statement must return a single
element"; "Except for the delete operation, it is an error if no element matches the
specified path"; add works on a non-repeating element "as long as they do not already
exist"; the insert index "is mandatory and must be equal or less than the number of elements
in the list"; move takes an element of a list from `source` to `destination`.

Paths are evaluated with fhirpathpy (R4 model). Each result node carries the path it was
reached by (`Patient.name[1].given[0]`); that path is walked in the JSON to find the element's
container, and the element found must be the very object (or equal value) fhirpathpy
returned, else the operation is refused. insert and move name a list: their path is split at
its last step into the owner (evaluated as above) and the list's element name. Element
names are checked against the R4B model of their owner; a choice is named as in FHIRPath
(`name = value` with a `valueQuantity` adds `valueQuantity`; replacing `Observation.value`
with a `valueString` swaps the element for `valueString`).

Status codes: a malformed Parameters body or FHIRPath expression is a 400 (`BadRequest`);
a path that matches nothing (add, insert, replace, move) or more than one element, an index
out of range or an add to an element that exists is a 422 (`Unprocessable`). The result is
not validated here; the caller validates it as it would an update.

Limits: `resolve()` is not available (fhirpathpy does not implement it), so contained
resources are reached as `Patient.contained[0]` or `Patient.contained.where(id = 'x')`;
results of a union (`|`) or of functions that build new values cannot be located and are
refused; a primitive that has only extensions (`_birthDate` without `birthDate`) is not seen
by FHIRPath here. Anonymous (backbone) values given as nested `part`s are shaped with the
R4B model of the target element, so a repeating child given once becomes a one-item list.

`apply_json_patch` applies an RFC 6902 JSON Patch with the `jsonpatch` library: a malformed
document is a 400; a failed `test` operation, a path that does not resolve, or a result that
is not a JSON object is a 422.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonpatch
import jsonpointer
import orjson
from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_server import fhirpath_limits  # noqa: F401  (repeat() on computed values ends)
from fhir_server.errors import BadRequest, Unprocessable
from fhir_server.model.validate import (
    COMPLEX,
    PRIMITIVE_EXT,
    RESOURCE,
    Element,
    Model,
    elements,
    model_for,
    validate_resource,
)
from fhir_server.safe_regex import FHIRPATH_FUNCTIONS

__all__ = ["apply_fhirpath_patch", "apply_json_patch"]

OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")
_R4 = models["r4"]
_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")
_LAST_STEP = re.compile(r"^(.*?)\.?([A-Za-z][A-Za-z0-9]*)$")


@dataclass(frozen=True)
class Operation:
    """One `operation` parameter of a FHIRPath Patch."""

    number: int  # 1-based, for diagnostics
    type: str
    path: str
    name: str | None = None
    value: Any = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None
    value_type: str | None = None  # "Quantity" for a valueQuantity value

    def fail(self, message: str) -> Unprocessable:
        return Unprocessable(
            f"Patch operation {self.number} ({self.type} at '{self.path}'): {message}"
        )


def apply_fhirpath_patch(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """A new resource: `resource` with the FHIRPath Patch `parameters` applied in order."""
    operations = parse_operations(parameters)
    result: dict[str, Any] = orjson.loads(orjson.dumps(resource))
    for operation in operations:
        _APPLY[operation.type](result, operation)
    return result


# -- reading the Parameters -----------------------------------------------------------------


def parse_operations(parameters: dict[str, Any]) -> list[Operation]:
    """The operations of a FHIRPath Patch Parameters resource; 400 if it is malformed."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise BadRequest("A FHIRPath Patch body must be a Parameters resource")
    validate_resource(parameters, deep=False)
    operations = []
    for number, parameter in enumerate(parameters.get("parameter") or [], start=1):
        if not isinstance(parameter, dict) or parameter.get("name") != "operation":
            raise BadRequest(f"Patch parameter {number} must be named 'operation'")
        operations.append(_operation(number, parameter.get("part") or []))
    return operations


def _operation(number: int, parts: list[Any]) -> Operation:
    found: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise BadRequest(f"Patch operation {number}: every part needs a name")
        name = part["name"]
        if name in found:
            raise BadRequest(f"Patch operation {number}: part '{name}' is given twice")
        found[name] = _part_value(part) if name == "value" else _primitive(part)
        if name == "value":
            found["value_type"] = next((k[5:] for k in part if k.startswith("value")), None)
    where = f"Patch operation {number}"
    kind = found.get("type")
    if kind not in OPERATION_TYPES:
        raise BadRequest(f"{where}: type must be one of {', '.join(OPERATION_TYPES)}, not {kind!r}")
    path = found.get("path")
    if not isinstance(path, str) or not path.strip():
        raise BadRequest(f"{where} ({kind}): a path is required")
    needed = {
        "add": ("name", "value"),
        "insert": ("value", "index"),
        "replace": ("value",),
        "move": ("source", "destination"),
        "delete": (),
    }[kind]
    for name in needed:
        if found.get(name) is None:
            raise BadRequest(f"{where} ({kind}): the '{name}' part is required")
    for name in ("index", "source", "destination"):
        if name in found and (type(found[name]) is not int or found[name] < 0):
            raise BadRequest(f"{where} ({kind}): '{name}' must be a non-negative integer")
    if "name" in found and not isinstance(found["name"], str):
        raise BadRequest(f"{where} ({kind}): 'name' must be a string")
    return Operation(
        number,
        kind,
        path.strip(),
        found.get("name"),
        found.get("value"),
        found.get("index"),
        found.get("source"),
        found.get("destination"),
        found.get("value_type"),
    )


def _primitive(part: dict[str, Any]) -> Any:
    values = [v for k, v in part.items() if k.startswith("value")]
    return values[0] if len(values) == 1 else None


def _part_value(part: dict[str, Any]) -> Any:
    """The value of a `value` part: a value[x], a resource, or an object built from parts."""
    values = [v for k, v in part.items() if k.startswith("value")]
    if values:
        return values[0]
    if "resource" in part:
        return part["resource"]
    if "part" not in part:
        return None
    out: dict[str, Any] = {}
    for sub in part["part"] or []:
        name, value = sub.get("name"), _part_value(sub)
        if not isinstance(name, str) or value is None:
            raise BadRequest(f"The value part '{name}' has no value")
        if name in out:
            previous = out[name]
            out[name] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            out[name] = value
    return out


# -- finding elements -----------------------------------------------------------------------


@dataclass
class Location:
    """Where an element lives: `owner[key]`, or `owner[key][index]` in a list."""

    owner: dict[str, Any]
    key: str
    index: int | None
    chain: list[tuple[dict[str, Any], str, int | None]]  # the owners above, outermost first

    @property
    def value(self) -> Any:
        item = self.owner[self.key]
        return item if self.index is None else item[self.index]


def _evaluate(resource: dict[str, Any], operation: Operation, path: str | None = None) -> list[Any]:
    expression = operation.path if path is None else path
    if "resolve(" in expression:
        raise BadRequest(
            f"Patch operation {operation.number}: resolve() is not supported; "
            "reach contained resources with contained.where(id = '...')"
        )
    try:
        nodes = _compiled(expression)(resource, {})
    except Exception as error:  # fhirpathpy raises bare Exceptions for syntax and type errors
        raise BadRequest(
            f"Patch operation {operation.number}: the FHIRPath '{expression}' "
            f"cannot be evaluated: {error}"
        ) from None
    # fhirpathpy also yields the null placeholders of `_given`-style arrays; they are no elements
    return [n for n in nodes if not (isinstance(n, ResourceNode) and n.data is None)]


@lru_cache(maxsize=256)
def _compiled(expression: str) -> Any:
    return compile_fhirpath(
        expression, _R4, {"returnRawData": True, "userInvocationTable": FHIRPATH_FUNCTIONS}
    )


def _single(
    resource: dict[str, Any], operation: Operation, path: str | None = None, required: bool = True
) -> object:  # a ResourceNode, a computed value, or None
    nodes = _evaluate(resource, operation, path)
    shown = operation.path if path is None else path
    if not nodes:
        if required:
            raise operation.fail(f"no element matches '{shown}'")
        return None
    if len(nodes) > 1:
        raise operation.fail(f"'{shown}' matches {len(nodes)} elements; it must match one")
    return nodes[0]


def _locate(resource: dict[str, Any], node: Any, operation: Operation) -> Location | None:
    """The Location of a fhirpathpy result node; None for the resource itself."""
    if not isinstance(node, ResourceNode):
        raise operation.fail("the path must select an element, not compute a value")
    if node.data is resource:
        return None
    if not node.propName:
        raise operation.fail("the element the path selects cannot be located in the resource")
    steps = node.propName.split(".")[1:]  # the first step is the resource type
    chain: list[tuple[dict[str, Any], str, int | None]] = []
    current: Any = resource
    for step in steps:
        match = _STEP.fullmatch(step)
        if match is None or not isinstance(current, dict):
            raise operation.fail(f"cannot follow '{node.propName}' in the resource")
        key = _json_key(current, match.group(1))
        index = int(match.group(2)) if match.group(2) is not None else None
        if key is None:
            raise operation.fail(f"cannot follow '{node.propName}' in the resource")
        chain.append((current, key, index))
        current = current[key]
        if index is not None:
            if not isinstance(current, list) or index >= len(current):
                raise operation.fail(f"cannot follow '{node.propName}' in the resource")
            current = current[index]
    same = current is node.data if isinstance(current, (dict, list)) else current == node.data
    if not same or not chain:
        raise operation.fail(f"'{node.propName}' does not lead to the element selected")
    owner, key, index = chain.pop()
    return Location(owner, key, index, chain)


def _json_key(data: dict[str, Any], name: str) -> str | None:
    """The JSON key of FHIRPath name `name` in `data`: itself, or its choice form valueX."""
    if name in data:
        return name
    for key in data:
        if key.startswith(name) and key[len(name) : len(name) + 1].isupper():
            return key
    return None


def _model_of(
    resource: dict[str, Any], chain: list[tuple[dict[str, Any], str, int | None]]
) -> Model | None:
    """The R4B model of the object reached through `chain` (None if unknown)."""
    model = model_for(resource.get("resourceType", ""))
    node: Any = resource
    for owner, key, index in chain:
        node = owner[key] if index is None else owner[key][index]
        info = elements(model).get(key) if model is not None else None
        if info is None:
            return None
        if info.kind == RESOURCE:
            model = model_for(node.get("resourceType", "")) if isinstance(node, dict) else None
        else:
            model = info.model
    return model


def _fields(resource: dict[str, Any], chain: list[Any]) -> dict[str, Element] | None:
    """The elements of the object that `chain` leads to, if its model is known."""
    model = _model_of(resource, chain)
    return elements(model) if model is not None else None


def _element(
    fields: dict[str, Element] | None, name: str, operation: Operation
) -> tuple[str, Element | None]:
    """The JSON name and Element for `name`: itself, or a choice (value -> valueQuantity)."""
    if fields is None:
        return name, None
    if name in fields and fields[name].kind != PRIMITIVE_EXT:
        return name, fields[name]
    choice = f"{name}{operation.value_type or ''}"
    if choice in fields and fields[choice].choice == name:
        return choice, fields[choice]
    raise operation.fail(f"'{name}' is not an element here")


def _shaped(value: Any, info: Element | None) -> Any:
    """A value built from parts, with the lists its model expects."""
    if info is None or not isinstance(value, dict) or info.kind != COMPLEX:
        return value
    fields = elements(info.model)
    out = {}
    for key, item in value.items():
        child = fields.get(key)
        if child is not None and child.many and not isinstance(item, list):
            item = [item]
        if child is not None and child.kind == COMPLEX:
            item = (
                [_shaped(i, child) for i in item]
                if isinstance(item, list)
                else _shaped(item, child)
            )
        out[key] = item
    return out


# -- the operations -------------------------------------------------------------------------


def _owner(
    resource: dict[str, Any], operation: Operation, path: str | None
) -> tuple[dict[str, Any], list[tuple[dict[str, Any], str, int | None]]]:
    """The object a path selects and the chain of (owner, key, index) that leads to it."""
    node = _single(resource, operation, path)
    location = _locate(resource, node, operation)
    if location is None:
        return resource, []
    target = location.value
    if not isinstance(target, dict):
        raise operation.fail("the path selects a primitive value, not an element with children")
    return target, [*location.chain, (location.owner, location.key, location.index)]


def _add(resource: dict[str, Any], operation: Operation) -> None:
    target, chain = _owner(resource, operation, None)
    fields = _fields(resource, chain)
    name, info = _element(fields, operation.name or "", operation)
    value = _shaped(operation.value, info)
    existing = target.get(name)
    if (info is not None and info.many) or (info is None and isinstance(existing, list)):
        items = existing if isinstance(existing, list) else []
        items.append(value)
        target[name] = items
        if isinstance(target.get("_" + name), list):
            target["_" + name].append(None)
        return
    choice = info.choice if info is not None else None
    group = {k for k, e in (fields or {}).items() if choice and e.choice == choice}
    taken = [k for k in target if k == name or k in group]
    if taken:
        raise operation.fail(f"'{taken[0]}' already has a value; use replace")
    target[name] = value


def _list_of(
    resource: dict[str, Any], operation: Operation
) -> tuple[dict[str, Any], str, list[Any], Element | None]:
    match = _LAST_STEP.match(operation.path)
    if match is None:
        raise BadRequest(
            f"Patch operation {operation.number} ({operation.type}): the path "
            "must end with the name of a list element"
        )
    owner_path, name = match.group(1), match.group(2)
    if not owner_path and name == resource.get("resourceType"):
        raise operation.fail("the path must name a list element, not the resource")
    chain: list[tuple[dict[str, Any], str, int | None]]
    if not owner_path or owner_path == resource.get("resourceType"):
        target, chain = resource, []
    else:
        target, chain = _owner(resource, operation, owner_path)
    name, info = _element(_fields(resource, chain), name, operation)
    if info is not None and not info.many:
        raise operation.fail(f"'{name}' is not a list")
    items = target.get(name)
    return target, name, items if isinstance(items, list) else [], info


def _insert(resource: dict[str, Any], operation: Operation) -> None:
    target, name, items, info = _list_of(resource, operation)
    index = operation.index or 0
    if index > len(items):
        raise operation.fail(f"index {index} is beyond the {len(items)} elements of '{name}'")
    items.insert(index, _shaped(operation.value, info))
    target[name] = items
    if isinstance(target.get("_" + name), list):
        target["_" + name].insert(index, None)


def _move(resource: dict[str, Any], operation: Operation) -> None:
    target, name, items, _ = _list_of(resource, operation)
    source, destination = operation.source or 0, operation.destination or 0
    for label, position in (("source", source), ("destination", destination)):
        if position >= len(items):
            raise operation.fail(
                f"{label} {position} is outside the {len(items)} elements of '{name}'"
            )
    for key in (name, "_" + name):
        if isinstance(target.get(key), list):
            target[key].insert(destination, target[key].pop(source))


def _replace(resource: dict[str, Any], operation: Operation) -> None:
    location = _locate(resource, _single(resource, operation), operation)
    if location is None:
        raise operation.fail("the resource itself cannot be replaced")
    owner, key, index = location.owner, location.key, location.index
    fields = _fields(resource, location.chain)
    info = fields.get(key) if fields else None
    if info is not None and info.choice and operation.value_type and index is None:
        key, info = _element(fields, info.choice, operation)  # valueQuantity -> valueString
        if key != location.key:
            owner.pop(location.key)
            owner.pop("_" + location.key, None)
    value = _shaped(operation.value, info)
    if index is None:
        owner[key] = value
    else:
        owner[key][index] = value


def _delete(resource: dict[str, Any], operation: Operation) -> None:
    node = _single(resource, operation, required=False)
    if node is None:
        return
    location = _locate(resource, node, operation)
    if location is None:
        raise operation.fail("the resource itself cannot be deleted")
    owner, key, index = location.owner, location.key, location.index
    if index is None:
        owner.pop(key)
        owner.pop("_" + key, None)
    else:
        owner[key].pop(index)
        if isinstance(owner.get("_" + key), list) and index < len(owner["_" + key]):
            owner["_" + key].pop(index)
    _prune(owner, key, location.chain)


def _prune(
    owner: dict[str, Any], key: str, chain: list[tuple[dict[str, Any], str, int | None]]
) -> None:
    """Remove the arrays and objects a delete left empty, up the chain (FHIR has none)."""
    for partner in (key, "_" + key):
        value = owner.get(partner)
        if isinstance(value, list) and all(v is None for v in value):
            owner.pop(partner)
    while chain and not owner:
        parent, parent_key, index = chain.pop()
        if index is None:
            parent.pop(parent_key)
        else:
            parent[parent_key].pop(index)
            if not parent[parent_key]:
                parent.pop(parent_key)
        owner = parent


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}


# -- JSON Patch -----------------------------------------------------------------------------


def apply_json_patch(resource: dict[str, Any], patch: list[Any]) -> dict[str, Any]:
    """A new resource: `resource` with the RFC 6902 JSON Patch `patch` applied.

    The operations go one by one onto one copy, so that an error names its operation by what
    the client sent (`op`, `path`, `from`) and never by the resource's content: the
    library's messages quote the document, which a caller allowed to update may not be
    allowed to read (masked or withheld elements)."""
    if not isinstance(patch, list) or not all(isinstance(op, dict) for op in patch):
        raise BadRequest("A JSON Patch document must be an array of operation objects")
    result: Any = copy.deepcopy(resource)  # a stored resource: nested 64 objects at most
    for op in patch:
        said = " (" + " ".join(_said(op[k]) for k in ("op", "path", "from") if k in op) + ")"
        try:
            result = jsonpatch.apply_patch(result, [op], in_place=True)
        except jsonpatch.JsonPatchTestFailed:
            raise Unprocessable(f"JSON Patch test operation failed{said}") from None
        except jsonpatch.InvalidJsonPatch as error:  # about the operation, not the resource
            raise BadRequest(f"Invalid JSON Patch document{said}: {error}") from None
        except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException):
            raise Unprocessable(
                f"JSON Patch path problem{said}: the location does not exist in the resource "
                "or cannot take the change"
            ) from None
        except (TypeError, ValueError, KeyError, IndexError):
            raise BadRequest(f"Invalid JSON Patch document{said}") from None
        except RecursionError:  # copying a value nested deeper than the parser's bound allows
            raise BadRequest(
                f"The JSON Patch document is nested too deeply to be applied{said}"
            ) from None
    if not isinstance(result, dict):
        raise Unprocessable("A JSON Patch must leave a resource (a JSON object)")
    return result


def _said(value: object) -> str:
    return value[:200] if isinstance(value, str) else f"<{type(value).__name__}>"
