"""The R4B pydantic models' own verdict (`Model.model_validate`), the walk's second layer.

Run only when the walk found nothing. What the models cannot take (R4-only elements and
uuids, nested structure-only resources, codes with a Unicode space) is taken out of a copy
first (or replaced by a placeholder the models accept); structure-only
resources are checked as DomainResources. Pydantic's error locations are followed back
through the JSON and the models to FHIRPath-style paths.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from fhir_server.errors import Issue
from fhir_server.model.validation.metadata import (
    DOMAIN_RESOURCE,
    RESOURCE,
    Element,
    Model,
    elements,
    model_for,
)
from fhir_server.model.validation.walk import MAX_ISSUES, Loc, Walk, keys_of, path_of

__all__ = ["deep_issues"]

_PLACEHOLDER = {"resourceType": "Basic", "code": {"text": "structure-only resource"}}
_CODE_PLACEHOLDER = "code"  # for a code the walk passed but the models' \\s would refuse


def _for_models(data: dict[str, Any], walk: Walk) -> dict[str, Any]:
    """A copy of `data` without what R4B models cannot take (R4-only parts, no-model types)."""
    root = dict(data)
    copied = {id(root)}
    # replacements first: a later removal may take away the part that held them
    edits: list[tuple[Loc, Any]] = [(loc, _CODE_PLACEHOLDER) for loc in walk.spaced_codes]
    edits += [(loc, _PLACEHOLDER) for loc in walk.structure_only]
    edits += [(loc, None) for loc in walk.r4_only]
    for loc, replacement in edits:
        keys = keys_of(loc)
        node: Any = root
        for key in keys[:-1]:
            child = _child(node, key)
            if child is None:
                break  # inside a part an earlier edit removed
            if id(child) not in copied:
                child = list(child) if isinstance(child, list) else dict(child)
                copied.add(id(child))
                node[key] = child
            node = child
        else:
            if replacement is None:
                node.pop(keys[-1], None)
            else:
                node[keys[-1]] = replacement
    return root


def _child(node: Any, key: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    return node[key] if isinstance(node, list) and isinstance(key, int) else None


def _model_issues(
    model: Model, data: dict[str, Any], original: dict[str, Any], loc: Loc
) -> list[Issue]:
    try:
        model.model_validate(data)
    except ValidationError as error:
        return [_issue_from(e, original, loc) for e in error.errors()[:MAX_ISSUES]]
    return []


def _issue_from(error: Any, data: dict[str, Any], loc: Loc) -> Issue:
    """One pydantic error as an Issue, its path followed through the JSON and the models."""
    node: Any = data
    fields: dict[str, Element] | None = elements(
        model_for(data.get("resourceType", "")) or DOMAIN_RESOURCE
    )
    for step in error["loc"]:
        if isinstance(step, int):
            if isinstance(loc, tuple) and loc[2] is None:
                loc = (loc[0], loc[1], step)
            node = node[step] if isinstance(node, list) and step < len(node) else None
            if isinstance(node, dict) and "resourceType" in node and fields is None:
                fields = elements(model_for(node["resourceType"]) or DOMAIN_RESOURCE)
            continue
        info = fields.get(step) if fields else None
        if info is None:
            if step not in ("root", "resource_type"):
                loc, fields = (loc, str(step), None), None
            continue
        loc = (loc, info, None)
        node = node.get(step) if isinstance(node, dict) else None
        fields = elements(info.model) if info.model is not None else None
        if info.kind == RESOURCE and isinstance(node, dict):
            fields = elements(model_for(node.get("resourceType", "")) or DOMAIN_RESOURCE)
    path = path_of(loc)
    if error.get("type") in ("missing", "model_field_validation.missing"):
        return Issue(f"{path}: A required element is missing", "required", "error", (path,))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return Issue(f"{path}: {message}", "value", "error", (path,))


def deep_issues(resource: dict[str, Any], walk: Walk) -> list[Issue]:
    """What the R4B models find wrong with `resource`, which `walk` has already passed."""
    rtype = resource["resourceType"]
    data = _for_models(resource, walk)
    model = model_for(rtype)
    base = elements(DOMAIN_RESOURCE)
    if model is None:
        issues = _model_issues(
            DOMAIN_RESOURCE, {k: v for k, v in data.items() if k in base}, resource, rtype
        )
    else:
        issues = _model_issues(model, data, resource, rtype)
    for loc in walk.structure_only:
        node: Any = resource
        for key in keys_of(loc):
            node = node[key]
        part = {k: v for k, v in node.items() if k in base}
        issues += _model_issues(DOMAIN_RESOURCE, part, part, loc)
    return issues
