"""The links inside a transaction's resources, found by element type, and their rewriting.

https://hl7.org/fhir/R4/http.html#trules -- "Servers SHALL replace all matching links in the
bundle, whether they are found in the resource ids, resource references, elements of type
uri, url, oid, uuid, and <a href="" & <img src="" in the narrative. Elements of type canonical
are not replaced." Everything else (Identifier.value, valueString, CodeableConcept.text, the
narrative's text) is data and stays as the client wrote it, even when it equals a fullUrl.

The element types come from the R4B models' metadata (`model.validation.metadata`); what
each type of element holds is worked out once per model (`_plan`) and reused by every
request. Resource types without an R4B model are walked by their DomainResource elements,
and below those only `reference` strings count as links (they are References in practice).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from enum import Enum
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from fhir_server.model.validation.metadata import (
    COMPLEX,
    DOMAIN_RESOURCE,
    PRIMITIVE,
    PRIMITIVE_EXT,
    RESOURCE,
    elements,
    model_for,
)

__all__ = ["Edit", "Link", "edit_links"]


class Link(Enum):
    """What kind of link a string is: the rewriting differs for each."""

    REFERENCE = "reference"  # Reference.reference: a fullUrl or a conditional reference
    URI = "uri"  # an element of type uri, url, oid or uuid
    NARRATIVE = "narrative"  # Narrative.div: only its href and src attributes are links


Edit = Callable[[Link, str], str]
"""Given a link's kind and text, the text to put in its place."""

_URI_TYPES = frozenset({"uri", "url", "oid", "uuid"})
_REFERENCE = get_fhir_model_class("Reference")
_NARRATIVE = get_fhir_model_class("Narrative")
_TAG = re.compile(r"<[^<>]+>")
_LINK_ATTRIBUTE = re.compile(r"""(\s(?:href|src)\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE)

_RESOURCE = "resource"  # a step into a resource: its model comes from its resourceType
_UNTYPED = "untyped"  # a step into an element no model describes
# A plan step: a kind of link, a nested model (a complex element), or one of the two above.
_Step = Link | type | str


@cache
def _plan(model: type) -> dict[str, _Step]:
    """For each JSON property of `model` that can hold a link: what it holds."""
    plan: dict[str, _Step] = {}
    for name, element in elements(model).items():
        if model is _REFERENCE and name == "reference":
            plan[name] = Link.REFERENCE
        elif model is _NARRATIVE and name == "div":
            plan[name] = Link.NARRATIVE
        elif element.kind == PRIMITIVE and element.type in _URI_TYPES:
            plan[name] = Link.URI
        elif element.kind == RESOURCE:
            plan[name] = _RESOURCE
        elif element.kind in (COMPLEX, PRIMITIVE_EXT) and element.model is not None:
            plan[name] = element.model
    return plan


def edit_links(resource: Any, edit: Edit) -> Any:
    """`resource` with every link replaced by `edit(kind, text)`, visited in document order.

    Copy on write: what changes is copied, the rest shared (`resource` itself is returned
    when nothing changes). A resource nested too deeply raises RecursionError."""
    return _value(resource, _RESOURCE, edit)


def _value(value: Any, step: _Step, edit: Edit) -> Any:
    if isinstance(step, Link):
        if type(value) is not str:
            return value
        return narrative(value, edit) if step is Link.NARRATIVE else edit(step, value)
    if type(value) is list:
        return _items(value, step, edit)
    if type(value) is not dict:
        return value
    if step == _RESOURCE:
        rtype = value.get("resourceType")
        model = model_for(rtype) if isinstance(rtype, str) else None
        return _object(value, _plan(model or DOMAIN_RESOURCE), edit, loose=model is None)
    if step == _UNTYPED:
        return _object(value, {}, edit, loose=True)
    assert isinstance(step, type)
    return _object(value, _plan(step), edit, loose=False)


def _object(data: dict[str, Any], plan: dict[str, _Step], edit: Edit, *, loose: bool) -> Any:
    """`data` by its `plan`; `loose`: properties the plan lacks are walked untyped, where
    only `reference` strings are links (resource types without an R4B model)."""
    out: dict[str, Any] | None = None
    for key, value in data.items():
        step = plan.get(key)
        if step is None:
            if not loose:
                continue
            step = Link.REFERENCE if key == "reference" and type(value) is str else _UNTYPED
        new = _value(value, step, edit)
        if new is not value:
            out = out if out is not None else dict(data)
            out[key] = new
    return data if out is None else out


def _items(items: list[Any], step: _Step, edit: Edit) -> list[Any]:
    out: list[Any] | None = None
    for index, item in enumerate(items):
        new = _value(item, step, edit)
        if new is not item:
            out = out if out is not None else list(items)
            out[index] = new
    return items if out is None else out


def narrative(div: str, edit: Edit) -> str:
    """`div` with the value of every href and src attribute passed through `edit`."""

    def attribute(match: re.Match[str]) -> str:
        lead, quote, value = match.groups()
        text = html.unescape(value)
        new = edit(Link.URI, text)
        return match.group(0) if new == text else f"{lead}{quote}{html.escape(new)}{quote}"

    return _TAG.sub(lambda tag: _LINK_ATTRIBUTE.sub(attribute, tag.group(0)), div)
