"""One interaction through the service as the system, answered as (status, JSON body)."""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.context import SYSTEM
from fhir_server.errors import FhirError
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService


async def call(
    svc: FhirService, method: str, path: str, body: object = None, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    """(status, body) of one interaction; a refused one gives its status and outcome."""
    headers = {k.replace("_", "-"): v for k, v in kwargs.pop("headers", {}).items()}
    request = Request(method, path, body=body, context=SYSTEM, headers=headers, **kwargs)
    try:
        response = await svc.handle(request)
    except FhirError as error:
        return error.status, error.outcome()
    data = response.body
    return response.status, orjson.loads(data) if isinstance(data, bytes) else (data or {})


def patient(mrn: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}], **extra}
