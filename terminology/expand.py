"""ValueSet $expand: the expansion resource built from a value set's items.

https://hl7.org/fhir/R4/valueset-operation-expand.html: "The definition of a value set is used
to create a simple collection of codes suitable for use for data entry or validation."
Parameters honoured: `filter` ("a text filter that is applied to restrict the codes that are
returned", here: every word of the filter starts a word of the display, or starts the code,
ignoring case), `count` and `offset` (paging; `expansion.total` counts every match),
`activeOnly`, `includeDesignations` and `displayLanguage`. The parameters used are echoed in
`expansion.parameter`. Abstract (notSelectable) concepts are listed with `abstract: true`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_server.errors import BadRequest
from terminology.compose import Item
from terminology.lookup import display_in
from terminology.parameters import param

_WORD = re.compile(r"\w+")
_DROPPED = frozenset({"compose", "expansion", "text"})


@dataclass(frozen=True)
class ExpandParams:
    """The $expand input parameters that shape the result."""

    filter: str | None = None
    count: int | None = None
    offset: int = 0
    active_only: bool = False
    include_designations: bool = False
    display_language: str | None = None

    def check(self) -> None:
        for name, text in (("filter", self.filter), ("displayLanguage", self.display_language)):
            if text is not None and not isinstance(text, str):
                raise BadRequest(f"$expand parameter {name} must be a string")
        for name, value in (("count", self.count), ("offset", self.offset)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise BadRequest(f"$expand parameter {name} must be a non-negative integer")

    def echoed(self) -> list[dict[str, Any]]:
        """expansion.parameter: the parameters that were given."""
        out = []
        if self.filter:
            out.append(param("filter", "String", self.filter))
        if self.count is not None:
            out.append(param("count", "Integer", self.count))
        if self.offset:
            out.append(param("offset", "Integer", self.offset))
        if self.active_only:
            out.append(param("activeOnly", "Boolean", True))
        if self.include_designations:
            out.append(param("includeDesignations", "Boolean", True))
        if self.display_language:
            out.append(param("displayLanguage", "Code", self.display_language))
        return out


def expand(value_set: dict[str, Any], items: list[Item], params: ExpandParams) -> dict[str, Any]:
    """The value set, without its compose, carrying the (paged) expansion."""
    params.check()
    language = params.display_language
    shown = [
        (i, display_in(language, i.display, i.designations))
        for i in items
        if not (params.active_only and i.inactive)
    ]
    if params.filter:
        words = [w.casefold() for w in _WORD.findall(params.filter)]
        shown = [(i, d) for i, d in shown if _matches(words, i.code, d)]
    end = None if params.count is None else params.offset + params.count
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "total": len(shown),
        "offset": params.offset,
    }
    echoed = params.echoed()
    if echoed:
        expansion["parameter"] = echoed
    page = [_entry(i, d, params.include_designations) for i, d in shown[params.offset : end]]
    if page:
        expansion["contains"] = page
    out = {k: v for k, v in value_set.items() if k not in _DROPPED}
    out["resourceType"] = "ValueSet"
    out["expansion"] = expansion
    return out


def _matches(words: list[str], code: str, display: str | None) -> bool:
    starts = [w.casefold() for w in _WORD.findall(display or "")]
    folded = code.casefold()
    return all(folded.startswith(w) or any(s.startswith(w) for s in starts) for w in words)


def _entry(item: Item, display: str | None, designations: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"system": item.system}
    if item.version:
        entry["version"] = item.version
    entry["code"] = item.code
    if display:
        entry["display"] = display
    if item.abstract:
        entry["abstract"] = True
    if item.inactive:
        entry["inactive"] = True
    if designations and item.designations:
        entry["designation"] = [dict(d) for d in item.designations]
    return entry
