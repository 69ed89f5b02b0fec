"""Building the Parameters resources the terminology operations return.

https://hl7.org/fhir/R4/parameters.html: each parameter has a name and one value[x] or parts.
"""

from __future__ import annotations

from typing import Any


def param(name: str, value_type: str, value: Any) -> dict[str, Any]:
    """One parameter: `param("result", "Boolean", True)` -> {name, valueBoolean}."""
    return {"name": name, f"value{value_type}": value}


def part(name: str, *parts: dict[str, Any]) -> dict[str, Any]:
    """One parameter made of parts."""
    return {"name": name, "part": list(parts)}


def parameters(*entries: dict[str, Any] | None) -> dict[str, Any]:
    """A Parameters resource of the given entries, `None` entries left out."""
    return {"resourceType": "Parameters", "parameter": [e for e in entries if e is not None]}


def optional(name: str, value_type: str, value: Any) -> dict[str, Any] | None:
    """A parameter, or None when there is no value to give."""
    return None if value is None or value == "" else param(name, value_type, value)
