"""`Patient/[id]/$access-log`: who saw this patient's data, when, what, with which app.

A Parameters resource with one `access` part per AuditEvent that names the patient
(newest first, at most `_count`, default 100, up to 1000): `when` (recorded), `who` (the
user: fhirUser or subject), `client` (the app), `action`, `what` (the interaction),
`outcome`, `resource` (each resource touched); for coalesced reads `when` is the last
access of the window and `period` its first and last. For the patient portal (the patient
themself: a token whose `patient` or `fhirUser` is this Patient) and privacy officers
(see `guard.may_audit`); anyone else gets 403.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.audit.guard import may_audit
from fhir_server.context import SYSTEM, AccessContext
from fhir_server.errors import Forbidden
from fhir_server.interactions.operations import Operation, OperationCall
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService

DEFAULT_COUNT = 100
MAX_COUNT = 1000


def access_log_operation(open_reads: bool = False) -> Operation:
    """The operation; with `open_reads` (authorization off) anyone may call it."""

    async def run(svc: FhirService, call: OperationCall) -> dict[str, Any]:
        if not (open_reads or _may_see(call.context, str(call.id))):
            raise Forbidden("The access log is for the patient themself and privacy officers")
        return await _run(svc, call)

    return Operation(
        "access-log", run, frozenset({"instance"}), frozenset({"Patient"}), access="none"
    )


def _may_see(ctx: AccessContext, patient: str) -> bool:
    return may_audit(ctx) or ctx.patient == patient or ctx.fhir_user == f"Patient/{patient}"


async def _run(svc: FhirService, call: OperationCall) -> dict[str, Any]:
    assert call.id
    await svc.current(SYSTEM, "Patient", call.id)  # 404 / 410 as a read would answer
    count = min(call.params.integer("_count") or DEFAULT_COUNT, MAX_COUNT)
    query = (("patient", f"Patient/{call.id}"), ("_sort", "-date"), ("_count", str(count)))
    found = await svc.handle(Request("GET", "AuditEvent", query, context=SYSTEM))
    body = found.body if isinstance(found.body, bytes) else orjson.dumps(found.body)
    entries = orjson.loads(body).get("entry") or []
    parts = [_access(e["resource"]) for e in entries if "resource" in e]
    return (
        {"resourceType": "Parameters", "parameter": parts}
        if parts
        else {"resourceType": "Parameters"}
    )


def _access(event: dict[str, Any]) -> dict[str, Any]:
    agents = event.get("agent") or []
    user: dict[str, Any] = next((a for a in agents if a.get("requestor")), {})
    client: dict[str, Any] = next((a for a in agents if not a.get("requestor")), {})
    who = (user.get("who") or {}).get("reference") or user.get("name") or "unknown"
    subtype = (event.get("subtype") or [{}])[0]
    what = subtype.get("display") or subtype.get("code") or event["type"].get("code")
    parts: list[dict[str, Any]] = [{"name": "when", "valueInstant": event["recorded"]}]
    if isinstance(event.get("period"), dict):  # coalesced reads: first..last of the window
        parts.append({"name": "period", "valuePeriod": event["period"]})
    parts.append({"name": "who", "valueString": who})
    if client.get("name"):
        parts.append({"name": "client", "valueString": client["name"]})
    parts += [
        {"name": "action", "valueCode": event.get("action", "E")},
        {"name": "what", "valueString": what},
        {"name": "outcome", "valueCode": event.get("outcome", "0")},
    ]
    for entity in event.get("entity") or []:
        ref = (entity.get("what") or {}).get("reference")
        if ref and (entity.get("role") or {}).get("code") != "1":
            parts.append({"name": "resource", "valueReference": {"reference": ref}})
    return {"name": "access", "part": parts}
