"""Conditions as three-valued building blocks: True (always), False (never) or a
`Condition` the storage engines (and `fhir_server.auth.matching` in memory) decide.

Consents and labels are compiled into these once per caller and type, folding what the
caller alone decides (who, why, when) into True or False so that only what depends on
the resource itself (its patient, code, labels) reaches the query."""

from __future__ import annotations

from collections.abc import Iterable

from fhir_server.search.conditions import AllOf, AnyOf, Condition, Not

Formula = Condition | bool


def all_of(parts: Iterable[Formula]) -> Formula:
    kept: list[Condition] = []
    for part in parts:
        if part is False:
            return False
        if isinstance(part, AllOf):
            kept.extend(part.conditions)
        elif part is not True:
            kept.append(part)
    if not kept:
        return True
    unique = list(dict.fromkeys(kept))
    return unique[0] if len(unique) == 1 else AllOf(tuple(unique))


def any_of(parts: Iterable[Formula]) -> Formula:
    """The OR of `parts`, flat: the engines answer one OR of many conditions of one kind
    (a reference to any of thousands of patients) with one indexed lookup."""
    kept: list[Condition] = []
    for part in parts:
        if part is True:
            return True
        if isinstance(part, AnyOf):
            kept.extend(part.conditions)
        elif part is not False:
            kept.append(part)
    if not kept:
        return False
    unique = list(dict.fromkeys(kept))
    return unique[0] if len(unique) == 1 else AnyOf(tuple(unique))


def not_(part: Formula) -> Formula:
    if isinstance(part, bool):
        return not part
    if isinstance(part, Not):
        return part.condition
    return Not(part)
