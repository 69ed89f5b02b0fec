"""What operators and orchestrators call: health checks and metrics, outside `/fhir` and
outside authorization.

- `GET /health/live`: 200 while the process answers at all.
- `GET /health/ready`: 200 once start-up finished (storage open and migrated, terminology
  loaded) and the storage answers a read within `READY_TIMEOUT` seconds; 503 otherwise,
  with an OperationOutcome saying which.
- `GET /metrics`: Prometheus text format. `FHIR_METRICS=loopback` (the default) answers
  callers on this machine only; `token` needs `Authorization: Bearer <FHIR_METRICS_TOKEN>`;
  `off` answers 404.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging

from fastapi import FastAPI
from starlette.requests import Request as HttpRequest
from starlette.responses import Response as HttpResponse

from fhir_server import metrics
from fhir_server.api.asgi import FHIR_JSON
from fhir_server.errors import Forbidden, NotFound, Unauthorized
from fhir_server.interactions.service import FhirService
from fhir_server.settings import Settings

log = logging.getLogger("fhir_server.health")
READY_TIMEOUT = 2.0
_PROBE = ("Patient", "health-check-probe")  # an id no client can create (ids are [A-Za-z0-9-.])


def install(app: FastAPI, settings: Settings) -> None:
    async def live() -> HttpResponse:
        return _status(200, "information", "informational", "alive")

    async def ready(request: HttpRequest) -> HttpResponse:
        service: FhirService | None = getattr(request.app.state, "service", None)
        if service is None:
            return _status(503, "error", "transient", "starting: storage or terminology not ready")
        try:
            await asyncio.wait_for(service.storage.read(*_PROBE), READY_TIMEOUT)
        except Exception as error:  # any failure of the probe means "not ready"
            log.warning("readiness probe failed: %s", type(error).__name__)
            return _status(503, "error", "transient", "storage unreachable")
        return _status(200, "information", "informational", "ready")

    async def metrics_endpoint(request: HttpRequest) -> HttpResponse:
        _guard_metrics(request, settings)
        if settings.storage == "sqlite":
            metrics.database_bytes.set(metrics.database_size(settings.database))
        hl7 = getattr(request.app.state, "hl7", None)
        if hl7 is not None:
            waiting, dead = await hl7.inbox.call(hl7.inbox.file.depth)
            metrics.hl7_inbox_depth.set(waiting)
            metrics.hl7_dead_letters.set(dead)
        content = await asyncio.to_thread(metrics.render)
        return HttpResponse(content, media_type=metrics.CONTENT_TYPE)

    app.add_api_route("/health/live", live, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/health/ready", ready, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)


def _guard_metrics(request: HttpRequest, settings: Settings) -> None:
    if settings.metrics == "off":
        raise NotFound("Metrics are off (FHIR_METRICS=off)")
    if settings.metrics == "token":
        expected = settings.metrics_token or ""
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if (
            not expected
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(token.encode(), expected.encode())
        ):
            raise Unauthorized(
                "The metrics need the bearer token set by FHIR_METRICS_TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return
    client = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(client).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise Forbidden("The metrics answer callers on this machine only (FHIR_METRICS=loopback)")


def _status(status: int, severity: str, code: str, text: str) -> HttpResponse:
    import orjson

    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": text}],
    }
    return HttpResponse(orjson.dumps(body), status_code=status, media_type=FHIR_JSON.decode())
