"""Reference search parameters: local `Type/id`, absolute URLs and canonical `url|version`.

https://hl7.org/fhir/R4/search.html#reference -- the value is `[type]/[id]`, an `[id]`
alone (its type resolved when the parameter has exactly one target type), an absolute URL,
or for canonical targets `[url]|[version]`; the `:[type]` modifier names the target type.
Contained references (`#id`) are not indexed. `:identifier` matches Reference.identifier
as a token (`[system]|[value]`); those identifiers are indexed as token values under the
name `[code]:identifier`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from fhir_server.search.conditions import HierarchyCondition, ReferenceCondition, TokenCondition
from fhir_server.search.registry import SearchParam, SearchRegistry
from fhir_server.search.types.common import ParseContext, bad_value, split_escaped, unescape
from fhir_server.search.values import ReferenceValue, TokenValue

MODIFIERS: frozenset[str] = frozenset({"identifier"})  # plus the target types, see `accepts`
HIERARCHY_MODIFIERS = frozenset({"above", "below"})
HIERARCHY_PARAMS = ("partof", "part-of", "parent")  # a type's circular "is part of" parameter
_ID = r"[A-Za-z0-9\-.]{1,64}"
_LOCAL = re.compile(rf"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_ID})(?:/_history/(?P<vid>{_ID}))?$")
_TAIL = re.compile(rf"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_ID})(?:/_history/(?P<vid>{_ID}))?$")
_CANONICAL_TYPES = frozenset({"canonical", "uri", "url"})


def accepts(param: SearchParam, modifier: str, registry: SearchRegistry) -> bool:
    if modifier in HIERARCHY_MODIFIERS:
        return any(hierarchy_param(registry, t) for t in registry.targets(param))
    return modifier in MODIFIERS or modifier in registry.targets(param)


def hierarchy_param(registry: SearchRegistry, type: str) -> str | None:
    """The parameter of `type` that makes its hierarchy: a reference to its own type named
    partof, part-of or parent (Location, Organization, Encounter, Task, Specimen...)."""
    params = registry.params_for(type)
    for code in HIERARCHY_PARAMS:
        param = params.get(code)
        if param is not None and param.expression and registry.targets(param, type) == {type}:
            return code
    return None


def extract(code: str, fhir_type: str | None, data: Any) -> Iterator[ReferenceValue | TokenValue]:
    if isinstance(data, dict):
        if fhir_type in (None, "Reference"):
            ref = data.get("reference")
            if isinstance(ref, str):
                found = parse_reference(code, ref)
                if found is not None:
                    yield found
            ident = data.get("identifier")
            if isinstance(ident, dict) and (ident.get("value") or ident.get("system")):
                yield TokenValue(f"{code}:identifier", ident.get("system"), ident.get("value"))
    elif isinstance(data, str) and (fhir_type is None or fhir_type in _CANONICAL_TYPES):
        found = parse_reference(code, data, canonical=True)
        if found is not None:
            yield found


def parse_reference(code: str, ref: str, *, canonical: bool = False) -> ReferenceValue | None:
    """A literal reference or canonical as an index value; None for contained references."""
    ref = ref.strip()
    if not ref or ref.startswith("#"):
        return None
    local = _LOCAL.match(ref)
    if local:
        return ReferenceValue(code, local["type"], local["id"], None, local["vid"])
    if canonical and "|" in ref:
        url, _, version = ref.partition("|")
        tail = _TAIL.search(url)
        return ReferenceValue(code, tail["type"] if tail else None, None, url, version or None)
    tail = _TAIL.search(ref)
    if tail and not ref.startswith("urn:"):
        url = ref[: tail.start("vid") - len("/_history/")] if tail["vid"] else ref
        return ReferenceValue(code, tail["type"], None, url, tail["vid"])
    return ReferenceValue(code, None, None, ref, None)


def parse(
    param: SearchParam, modifier: str | None, value: str, ctx: ParseContext
) -> ReferenceCondition | TokenCondition | HierarchyCondition:
    if modifier in HIERARCHY_MODIFIERS:
        return _hierarchy(param, modifier == "above", value, ctx)
    if modifier == "identifier":
        system, bar, ident = (unescape(p) for p in _split_token(value))
        return TokenCondition(f"{param.code}:identifier", system if bar else None, ident or None)
    text, base, registry = unescape(value).strip(), ctx.base, ctx.registry
    if modifier:  # subject:Patient=23 (or =Patient/23)
        ident = text.rsplit("/", 1)[-1] if text.startswith(f"{modifier}/") else text
        return ReferenceCondition(param.code, modifier, ident)
    if base and text.startswith(base.rstrip("/") + "/"):
        text = text[len(base.rstrip("/")) + 1 :]
    local = _LOCAL.match(text)
    if local and local["type"] in registry.resource_types:
        return ReferenceCondition(param.code, local["type"], local["id"], None, local["vid"])
    if "/" not in text and ":" not in text:
        targets = registry.targets(param)
        only = next(iter(targets)) if len(targets) == 1 else None
        return ReferenceCondition(param.code, only, text)
    found = parse_reference(param.code, text, canonical=True)
    if found is None:
        return ReferenceCondition(param.code, url=text)
    return ReferenceCondition(param.code, url=found.url, version=found.version)


def _hierarchy(
    param: SearchParam, above: bool, value: str, ctx: ParseContext
) -> HierarchyCondition:
    """`location:below=Location/42` (or `=42` when one target type has a hierarchy)."""
    found = parse(param, None, value, ctx)
    assert isinstance(found, ReferenceCondition)
    kind = "above" if above else "below"
    if found.target_type is None:
        typed = [t for t in ctx.registry.targets(param) if hierarchy_param(ctx.registry, t)]
        found = replace(found, target_type=typed[0] if len(typed) == 1 else None)
    via = hierarchy_param(ctx.registry, found.target_type) if found.target_type else None
    if found.target_id is None or found.target_type is None or via is None:
        raise bad_value(
            param.code + f":{kind}",
            value,
            "Type/id of a resource in a hierarchy (e.g. Location/42)",
        )
    return HierarchyCondition(param.code, found.target_type, found.target_id, above, via)


def _split_token(value: str) -> tuple[str, str, str]:
    """(system, "|" or "", value) of a token search value."""
    parts = split_escaped(value, "|")
    if len(parts) == 1:
        return "", "", value
    return parts[0], "|", "|".join(parts[1:])
