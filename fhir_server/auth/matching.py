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
    range_matches,
)
from fhir_server.search.values import (
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)

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


def params_of(condition: Condition) -> set[str]:
    """The search parameter codes `condition` reads (to extract only those values)."""
    if isinstance(condition, AllOf | AnyOf):
        return set().union(*(params_of(c) for c in condition.conditions))
    if isinstance(condition, Not):
        return params_of(condition.condition)
    param = getattr(condition, "param", None)
    return {param} if isinstance(param, str) else set()


def matches(condition: Condition, resource: dict[str, Any], values: Sequence[IndexValue]) -> bool:
    """Whether `resource`, whose index values are `values`, satisfies `condition`."""
    match condition:
        case AllOf():
            return all(matches(c, resource, values) for c in condition.conditions)
        case AnyOf():
            return any(matches(c, resource, values) for c in condition.conditions)
        case Not():
            return not matches(condition.condition, resource, values)
        case IdCondition():
            return resource.get("id") in condition.ids
        case MissingCondition():
            present = any(getattr(v, "param", None) == condition.param for v in values)
            return present != condition.missing
        case TokenCondition():
            found = any(_token(condition, v) for v in _of(values, condition.param, TokenValue))
            return found != condition.negate
        case TokenSetCondition():
            found = any(
                (v.system or "", v.code or "") in condition.codes
                for v in _of(values, condition.param, TokenValue)
            )
            return found != condition.negate
    return any(
        _leaf(condition, v)
        for v in values
        if getattr(v, "param", None) == getattr(condition, "param", None)
    )


def _of(values: Sequence[IndexValue], param: str, kind: type[TokenValue]) -> list[TokenValue]:
    return [v for v in values if isinstance(v, kind) and v.param == param]


def _token(c: TokenCondition, v: TokenValue) -> bool:
    if c.system is not None and (v.system or "") != c.system:
        return False
    return c.code is None or v.code == c.code


def _leaf(c: Condition, v: IndexValue) -> bool:
    match c, v:
        case StringCondition(), StringValue():
            if c.mode == "exact":
                return v.exact == c.value
            return c.value in v.value if c.mode == "contains" else v.value.startswith(c.value)
        case ReferenceCondition(), ReferenceValue():
            if c.url is not None:
                return v.url == c.url and (c.version is None or v.version == c.version)
            return (
                c.target_type is None or v.target_type == c.target_type
            ) and v.target_id == c.target_id
        case UriCondition(), UriValue():
            return v.uri == c.uri
        case DateCondition(), DateValue():
            return range_matches(c.prefix, c.low, c.high, v.low, v.high)
        case NumberCondition(), NumberValue():
            return range_matches(c.prefix, c.low, c.high, v.low, v.high)
        case QuantityCondition(), QuantityValue():
            return (
                range_matches(c.prefix, c.low, c.high, v.low, v.high)
                and (c.system is None or v.system == c.system)
                and (c.code is None or v.code == c.code or v.unit == c.code)
            )
    return False
