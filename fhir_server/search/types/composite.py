"""Composite search parameters: several components that must match within one element.

https://hl7.org/fhir/R4/search.html#composite -- the value is the components' values joined
by `$` (`code-value-quantity=http://loinc.org|8480-6$gt130`); each part is a value of the
component's own parameter type. "the search is evaluated ... so that the components match
within the same element": Observation.component[0] may not give the code and
Observation.component[1] the value. The extractor (`extract.CompositePlan`) therefore
indexes one `CompositeValue` per combination of component values of each element.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import CompositeCondition, Condition
from fhir_server.search.registry import SearchParam
from fhir_server.search.types.common import ParseContext, bad_value, split_escaped
from fhir_server.search.values import IndexValue

MODIFIERS: frozenset[str] = frozenset()


def extract(code: str, fhir_type: str | None, data: Any) -> Iterator[IndexValue]:
    """Nothing: composites are indexed per element by `extract.CompositePlan`."""
    return iter(())


def component_params(param: SearchParam, ctx: ParseContext) -> list[SearchParam]:
    """The parameters of `param`'s components, in order (BadRequest if one is unknown)."""
    found = []
    for component in param.components:
        target = ctx.registry.by_url(component.definition)
        if target is None or target.type in ("composite", "special"):
            raise BadRequest(
                f"Composite parameter '{param.code}' has an unsupported component "
                f"'{component.definition}'",
                expression=(param.code,),
            )
        found.append(target)
    return found


def parse(
    param: SearchParam, modifier: str | None, value: str, ctx: ParseContext
) -> CompositeCondition:
    from fhir_server.search.types import TYPES  # the component types' modules

    params = component_params(param, ctx)
    parts = split_escaped(value, "$")
    if len(parts) != len(params):
        expected = "$".join(p.type for p in params)
        raise bad_value(param.code, value, f"composite value ({expected})")
    conditions: list[Condition] = []
    for part, target in zip(parts, params, strict=True):
        try:
            conditions.append(TYPES[target.type].parse(target, None, part, ctx))
        except BadRequest as error:  # name the parameter the client wrote
            raise BadRequest(
                f"{param.code}: {error.diagnostics}", expression=(param.code,)
            ) from None
    return CompositeCondition(param.code, tuple(conditions))
