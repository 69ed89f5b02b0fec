"""The `_summary` and `_elements` subsets of a resource.

https://hl7.org/fhir/R4/search.html#summary -- `_summary=true` returns "a limited subset of
elements from the resource ... all supported elements that are marked as 'summary' in the base
definition of the resource(s)"; `text` returns "only the text, id, meta, and top-level
mandatory elements"; `data` "removes the text element"; `false` returns everything.
https://hl7.org/fhir/R4/search.html#elements -- `_elements` returns the listed top-level
elements; "Servers SHOULD always return mandatory elements whether they are requested or
not", and SHOULD mark subsetted resources with the SUBSETTED tag so that they are not used to
overwrite a complete resource.

The summary flags come from the R4B models (`summary_element_property`), which match R4's
`isSummary` for every shared element; they apply recursively into complex types and into
resources inside resources (Bundle.entry.resource). Primitive extensions (`_x`) are not
summary elements. Types without an R4B model (see `validate.STRUCTURE_ONLY_TYPES`) keep their
own elements in `_summary=true`, as nothing says which of them are summary.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.model.validate import COMPLEX, RESOURCE, Model, elements, model_for

__all__ = ["SUBSETTED", "apply_elements", "apply_summary"]

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
ALWAYS = ("resourceType", "id", "meta")
SUMMARY_MODES = ("true", "text", "data", "false")


def apply_summary(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """`resource` as `_summary=mode` asks (true | text | data | false); a new dict."""
    if mode == "false":
        return resource
    if mode == "true":
        out = _summarize(resource)
    elif mode == "text":
        keep = set(ALWAYS) | {"text"} | _mandatory(resource.get("resourceType", ""))
        out = {k: v for k, v in resource.items() if k in keep}
    elif mode == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    else:
        raise BadRequest(
            f"_summary={mode} is not one of true, text, data, count, false",
            expression=("_summary",),
        )
    return _tagged(out)


def apply_elements(resource: dict[str, Any], elements_: list[str]) -> dict[str, Any]:
    """`resource` with only the listed top-level elements and the mandatory ones; a new dict.

    `name`, `Patient.name` and the choice form `value` (keeps valueQuantity, _valueString ...)
    are understood; a deeper path such as `name.family` keeps its top-level element.
    """
    rtype = resource.get("resourceType", "")
    wanted = set(ALWAYS) | _mandatory(rtype)
    for item in elements_:
        name = item.strip()
        if name.startswith(rtype + "."):
            name = name[len(rtype) + 1 :]
        wanted.add(name.split(".")[0])
    choices = _choice_groups(rtype)
    out = {}
    for key, value in resource.items():
        name = key[1:] if key.startswith("_") else key
        if name in wanted or choices.get(name) in wanted:
            out[key] = value
    return _tagged(out)


def _tagged(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(
        t.get("system") == SUBSETTED["system"] and t.get("code") == "SUBSETTED"
        for t in tags
        if isinstance(t, dict)
    ):
        tags.append(dict(SUBSETTED))
    meta["tag"] = tags
    out = {"resourceType": resource["resourceType"]} if "resourceType" in resource else {}
    out.update(resource)
    out["meta"] = meta
    return out


@cache
def _mandatory(resource_type: str) -> frozenset[str]:
    """Top-level JSON names that carry a mandatory element (with their choice variants)."""
    model = model_for(resource_type)
    if model is None:
        return frozenset()
    return frozenset(e.name for e in elements(model).values() if e.required)


@cache
def _choice_groups(resource_type: str) -> dict[str, str]:
    """JSON name -> choice group name ("valueQuantity" -> "value") for one resource type."""
    model = model_for(resource_type)
    if model is None:
        return {}
    return {e.name: e.choice for e in elements(model).values() if e.choice}


@cache
def _summary_names(model: Model) -> frozenset[str]:
    return frozenset(e.name for e in elements(model).values() if e.summary)


def _summarize(resource: dict[str, Any]) -> dict[str, Any]:
    model = model_for(resource.get("resourceType", ""))
    if model is None:  # a type without a model: its DomainResource part is all we know
        return {k: v for k, v in resource.items() if k not in ("text", "contained")}
    out = _summary_of(resource, model)
    out.update((k, resource[k]) for k in ALWAYS if k in resource)
    return out


def _summary_of(data: dict[str, Any], model: Model) -> dict[str, Any]:
    fields = elements(model)
    names = _summary_names(model)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            continue
        info = fields[key]
        if info.kind == COMPLEX:
            value = _each(value, lambda v, m=info.model: _summary_of(v, m))
        elif info.kind == RESOURCE:
            value = _each(value, lambda v: _tagged(_summarize(v)))
        if value not in (None, [], {}):
            out[key] = value
    return out


def _each(value: Any, fn: Any) -> Any:
    if isinstance(value, list):
        items = [fn(v) if isinstance(v, dict) else v for v in value]
        return [v for v in items if v not in (None, {})]
    return fn(value) if isinstance(value, dict) else value
