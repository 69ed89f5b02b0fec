"""Whether one resource matches search conditions, decided in memory from its index values.

The access policy restricts searches by adding conditions that the storage engine runs;
a read by id, a version in a history page and a resource about to be written are judged
by the same conditions here, against the index values the resource's own search
parameters give (the values the engines would store). Only the kinds of condition that
compartments and granular scopes use are supported (`supports` says which); a granular
scope whose query needs another kind grants nothing rather than something approximate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_server.search.conditions import (
    AllOf,
    AnyOf,
    Condition,
    DateCondition,
    IdCondition,
    MissingCondition,
    Not,
    NumberCondition,
    QuantityCondition,
    ReferenceCondition,
    StringCondition,
    TokenCondition,
    TokenSetCondition,
    UriCondition,
)
from fhir_server.search.memory import params_of, verdict
from fhir_server.search.values import IndexValue

__all__ = ["matches", "params_of", "supports"]

_LEAVES = (
    IdCondition,
    TokenCondition,
    TokenSetCondition,
    StringCondition,
    ReferenceCondition,
    UriCondition,
    DateCondition,
    NumberCondition,
    QuantityCondition,
    MissingCondition,
)


def supports(condition: Condition) -> bool:
    """Whether `matches` can decide `condition` (and everything inside it)."""
    if isinstance(condition, AllOf | AnyOf):
        return all(supports(c) for c in condition.conditions)
    if isinstance(condition, Not):
        return supports(condition.condition)
    if isinstance(condition, UriCondition):
        return condition.mode == "eq"
    return isinstance(condition, _LEAVES)


def matches(condition: Condition, resource: dict[str, Any], values: Sequence[IndexValue]) -> bool:
    """Whether `resource`, whose index values are `values`, satisfies `condition` (one that
    `supports` accepts: decided in memory, see `fhir_server.search.memory`)."""
    return verdict(condition, resource.get("id"), values) == "yes"
