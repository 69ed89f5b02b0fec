"""Bounds on fhirpathpy for expressions that clients write (FHIRPath Patch paths, custom
SearchParameter expressions): `repeat()` always ends.

https://hl7.org/fhir/fhirpath.html#functions -- `repeat(projection)` "will repeat the
projection on each item of the input until no new items are found". On elements of a resource
that ends (a resource is a finite tree), but a projection that computes values never does:
`Patient.name.given.repeat($this + 'x')` yields a new string each round, and fhirpathpy 2.x
then loops forever, holding the event loop. Here `repeat()` walks what the projection selects
from the resource as the spec says, and returns values it computes without walking them again
(`(1 | 2).repeat($this + 1)` is `2 | 3`).

Importing this module installs the bounded `repeat()` in fhirpathpy's function table, once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, cast

from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.engine.nodes import ResourceNode


def bounded_repeat(ctx: Any, data: Any, projection: Callable[[Any], list[Any]]) -> list[Any]:
    """fhirpathpy's `repeat()`, walking only elements of the resource (ResourceNodes)."""
    if not isinstance(data, list):
        return []
    result: list[Any] = []
    seen: set[Any] = set()
    pending = deque(data)
    while pending:
        found = [item for item in projection(pending.popleft()) if item not in seen]
        seen.update(found)
        result.extend(found)
        pending.extend(item for item in found if isinstance(item, ResourceNode))
    return result


_REPEAT = cast(dict[str, Any], invocation_registry["repeat"])  # typed loosely by fhirpathpy
_REPEAT["fn"] = bounded_repeat
