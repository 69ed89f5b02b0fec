"""A FhirService on a test engine, holding a fixed set of resources (PUT by id), with
`$everything` registered."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from fhir_server.context import SYSTEM
from fhir_server.interactions.everything import everything_operation
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage


async def loaded_service(storage: Storage, resources: Iterable[dict[str, Any]]) -> FhirService:
    svc = FhirService(storage, base_url="http://test/fhir")
    svc.add_operation(everything_operation())  # as the assembly registers it
    for resource in resources:
        path = f"{resource['resourceType']}/{resource['id']}"
        response = await svc.handle(Request("PUT", path, body=resource, context=SYSTEM))
        assert response.status == 201, response.body
    return svc


async def call(
    svc: FhirService, method: str, path: str, body: object = None, query: tuple[Any, ...] = ()
) -> dict[str, Any]:
    """One interaction as the system; the body of the answer as JSON."""
    response = await svc.handle(Request(method, path, query, body=body, context=SYSTEM))
    data = response.body
    return orjson.loads(data) if isinstance(data, bytes) else data  # type: ignore[return-value]
