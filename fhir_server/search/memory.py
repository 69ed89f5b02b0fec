"""Whether one resource matches search conditions, decided in memory from its index values.

The storage engines answer searches over every resource; some callers judge one resource
at a time against the same conditions, without a query: the access policy (a read by id, a
version in a history page, a resource about to be written, under a granular scope or a
compartment) and the subscription matcher (a version just written, against a thousand
subscriptions' criteria). They give the resource's own index values (`Indexer.values_of`,
the values the engines would store) and get the engines' answer, or "unknown" for a
condition that needs other resources (chains, `_has`, `_text`...) or a kind not decided
here: the caller then asks the engine, or grants nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

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

Verdict = Literal["yes", "no", "unknown"]


def verdict(c: Condition, id: str | None, values: Sequence[IndexValue]) -> Verdict:
    """Whether the resource `id` with index `values` satisfies `c`: "yes", "no", or
    "unknown" when that cannot be decided from them."""
    if isinstance(c, AllOf):
        each = [verdict(inner, id, values) for inner in c.conditions]
        return "no" if "no" in each else "unknown" if "unknown" in each else "yes"
    if isinstance(c, AnyOf):
        each = [verdict(inner, id, values) for inner in c.conditions]
        return "yes" if "yes" in each else "unknown" if "unknown" in each else "no"
    if isinstance(c, Not):
        inner = verdict(c.condition, id, values)
        return "unknown" if inner == "unknown" else _yes(inner == "no")
    if isinstance(c, IdCondition):
        return _yes(id in c.ids)
    if isinstance(c, MissingCondition):
        return _yes(any(v.param == c.param for v in values) != c.missing)
    if isinstance(c, TokenCondition):
        found = any(_token(c, v) for v in values if isinstance(v, TokenValue))
        return _yes(found != c.negate)
    if isinstance(c, TokenSetCondition):
        found = any(
            (v.system or "", v.code or "") in c.codes
            for v in values
            if isinstance(v, TokenValue) and v.param == c.param
        )
        return _yes(found != c.negate)
    test = _TESTS.get(type(c))
    if test is None:
        return "unknown"
    kind, check = test
    param = getattr(c, "param", None)
    return _yes(any(check(c, v) for v in values if isinstance(v, kind) and v.param == param))


def params_of(condition: Condition) -> set[str]:
    """The search parameter codes `condition` reads (to extract only those values)."""
    if isinstance(condition, AllOf | AnyOf):
        return set().union(*(params_of(c) for c in condition.conditions))
    if isinstance(condition, Not):
        return params_of(condition.condition)
    param = getattr(condition, "param", None)
    return {param} if isinstance(param, str) else set()


def _yes(value: bool) -> Verdict:
    return "yes" if value else "no"


def _token(c: TokenCondition, v: TokenValue) -> bool:
    if v.param != c.param or (c.code is not None and v.code != c.code):
        return False
    if c.system is None:
        return True
    return not v.system if c.system == "" else v.system == c.system


def _string(c: StringCondition, v: StringValue) -> bool:
    if c.mode == "exact":
        return v.exact == c.value
    return v.value.startswith(c.value) if c.mode == "start" else c.value in v.value


def _reference(c: ReferenceCondition, v: ReferenceValue) -> bool:
    if c.url is not None:
        return v.url == c.url and (c.version is None or v.version == c.version)
    return (c.target_type is None or v.target_type == c.target_type) and (
        v.target_id == c.target_id
    )


def _range(c: DateCondition | NumberCondition, v: DateValue | NumberValue) -> bool:
    return range_matches(c.prefix, c.low, c.high, v.low, v.high)


def _quantity(c: QuantityCondition, v: QuantityValue) -> bool:
    if c.code is not None and v.code != c.code:
        return False
    if c.system is not None and v.system != c.system:
        return False
    return range_matches(c.prefix, c.low, c.high, v.low, v.high)


def _uri(c: UriCondition, v: UriValue) -> bool:
    if c.mode == "eq":
        return v.uri == c.uri
    return v.uri.startswith(c.uri) if c.mode == "below" else c.uri.startswith(v.uri)


_TESTS: dict[type, tuple[type, Callable[[Any, Any], bool]]] = {
    StringCondition: (StringValue, _string),
    ReferenceCondition: (ReferenceValue, _reference),
    DateCondition: (DateValue, _range),
    NumberCondition: (NumberValue, _range),
    QuantityCondition: (QuantityValue, _quantity),
    UriCondition: (UriValue, _uri),
}
