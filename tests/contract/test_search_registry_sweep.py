"""Every search parameter of the R4 core registry is searchable, on every engine.

For each resource type and each of its parameters, a well-formed value of the
parameter's type is searched under `Prefer: handling=strict`: the answer must be a
searchset (a 400 would mean the parameter is unknown or unsupported, a 500 a bug). One
resource per type that holds the searched value is not needed for this: the contract and
criteria tests check matching; this checks coverage.
"""

from __future__ import annotations

import orjson

from fhir_server.context import SYSTEM
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.search.registry import SearchParam, load_registry
from fhir_server.storage.base import Storage

VALUES = {
    "token": "http://example.org|x",
    "string": "x",
    "date": "ge2020-01-01",
    "number": "gt1",
    "quantity": "gt1|http://unitsofmeasure.org|mg",
    "reference": "Patient/x",
    "uri": "http://example.org/x",
}
SPECIAL = {"near": "42.25|-83.69|10|km", "_filter": "_id eq x"}
# Special parameters the R4 package defines that are not search criteria of their own:
# `_text`/`_content` are full-text searches of the narrative / whole resource, `_query`
# names a named query; `near` and `_filter` are swept.
NOT_CRITERIA = frozenset({"_text", "_content", "_query"})


def _value(param: SearchParam) -> str:
    """A value of the parameter's type; a composite's joins one per component with `$`."""
    if param.type == "special":
        return SPECIAL[param.code]
    if param.type != "composite":
        return VALUES[param.type]
    registry = load_registry()
    parts = []
    for component in param.components:
        inner = registry.by_url(component.definition)
        parts.append(VALUES[inner.type] if inner else VALUES["token"])
    return "$".join(parts)


async def test_every_core_parameter_is_searchable(storage: Storage) -> None:
    registry = load_registry()
    svc = FhirService(storage)
    failures = []
    swept = 0
    for type in sorted(registry.resource_types):
        for code in sorted(registry.params_for(type)):
            if code in NOT_CRITERIA:
                continue
            value = _value(registry.params_for(type)[code])
            try:
                response = await svc.handle(
                    Request(
                        "GET",
                        type,
                        ((code, value),),
                        context=SYSTEM,
                        headers={"prefer": "handling=strict"},
                    )
                )
                body = response.body
                data = orjson.loads(body) if isinstance(body, bytes) else body
                assert isinstance(data, dict) and data["type"] == "searchset"
                swept += 1
            except Exception as error:  # collected, reported together
                failures.append(f"{type}?{code}={value}: {error}")
    assert not failures, f"{len(failures)} not searchable:\n" + "\n".join(failures[:40])
    assert swept > 2000  # the R4 registry: ~1,400 definitions, many shared by several types
