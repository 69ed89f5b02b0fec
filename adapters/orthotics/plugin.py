"""Plugging the orthosis order flow into the FHIR service.

- Terminology: the CodeSystems and ValueSets of `codes` are handed to the terminology
  service (`publish`), as its packaged content is: `$lookup`, `$validate-code` and `$expand`
  answer for them.
- Validation on write: an orthosis DeviceRequest and foot measurement Observations are
  checked (`order.check_resource`); a refusal names the parameter and its range.
- Operations: `DeviceRequest/[id]/$design-orthosis` and `Device/[id]/$print-files`
  (`workflow`). `recover` marks failed the design Tasks a stopped server left unfinished;
  the assembly calls it when a server starts (not when a command opens the service).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.orthotics import codes
from adapters.orthotics.order import check_resource
from adapters.orthotics.workflow import Options, Workflow, recover

__all__ = ["install", "recover"]
from fhir_server.interactions.service import FhirService


async def install(
    svc: FhirService, publish: Callable[[dict[str, Any]], None], options: Options
) -> Workflow:
    """Attach the orthosis order flow to `svc`; `publish` adds terminology content."""
    for resource in codes.content():
        publish(resource)
    svc.add_validator(check_resource)
    workflow = Workflow(svc, options)
    for operation in workflow.operations():
        svc.add_operation(operation)
    return workflow
