"""`Subscription/[id]/$status`, `$events` and `$get-ws-binding-token` (Backport IG, R4).

https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-status.html
-- a Bundle (searchset) of SubscriptionStatus (R4: Parameters) of type `query-status`.
https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-events.html
-- the events numbered `eventsSinceNumber` to `eventsUntilNumber` still held by the server,
as a notification Bundle of type `query-event`.
https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-get-ws-binding-token.html
-- a short-lived token a browser sends over the websocket (`bind-with-token <token>`).
Each reads the Subscription through the access policy first.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fhir_server.errors import BadRequest, Unprocessable
from fhir_server.interactions.operations import Operation, OperationCall
from fhir_server.model import fhirjson
from subscriptions import websocket
from subscriptions.delivery import Options
from subscriptions.model import Subscription, queue_of
from subscriptions.notifications import Event, bundle, status_parameters
from subscriptions.registry import Registry

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

MAX_EVENTS = 1000  # in one $events answer
DEFINITIONS = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"


def operations_for(registry: Registry, options: Options) -> list[Operation]:
    async def status(service: FhirService, call: OperationCall) -> dict[str, Any]:
        ids = [call.id] if call.id else call.params.strings("id")
        if not ids:
            raise BadRequest("$status at type level needs one or more 'id' parameters")
        entries = []
        for id in ids:
            sub = await _subscription(service, registry, call, id)
            head = await _head(service, id)
            parameters = status_parameters(sub, "query-status", head, [], options.base)
            entries.append({"resource": parameters, "search": {"mode": "match"}})
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(entries),
            "entry": entries,
        }

    async def events(service: FhirService, call: OperationCall) -> dict[str, Any]:
        assert call.id is not None
        sub = await _subscription(service, registry, call, call.id)
        since = call.params.integer("eventsSinceNumber") or 1
        until = call.params.integer("eventsUntilNumber")
        content = call.params.string("content")
        if content is not None:
            if content not in ("empty", "id-only", "full-resource"):
                raise BadRequest("content must be empty, id-only or full-resource")
            sub = replace(sub, content=content)  # type: ignore[arg-type]
        found = await service.storage.queue_entries(
            queue_of(sub.id), max(since - 1, 0), until=until, limit=MAX_EVENTS
        )
        listed = [Event.load(n, payload) for n, payload in found]
        resources: dict[int, bytes] = {}
        if sub.content == "full-resource":
            for event in listed:
                rec = await service.storage.vread(event.type, event.id, event.version)
                if (
                    rec is not None
                    and not rec.deleted
                    and service.policy.visible(call.context, rec)
                ):
                    resources[event.number] = rec.data
        head = await _head(service, sub.id)
        return bundle(sub, "query-event", head, listed, options.base, resources)

    async def ws_token(service: FhirService, call: OperationCall) -> dict[str, Any]:
        ids = [call.id] if call.id else call.params.strings("id")
        if not ids:
            raise BadRequest("$get-ws-binding-token at type level needs 'id' parameters")
        for id in ids:
            sub = await _subscription(service, registry, call, id)
            if sub.channel != "websocket":
                raise Unprocessable(f"Subscription/{id} does not use the websocket channel")
        token, expires = await websocket.issue(service.storage, ids)
        return {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "token", "valueString": token},
                {"name": "expiration", "valueDateTime": expires},
                {"name": "subscription", "valueString": ",".join(ids)},
                {"name": "websocket-url", "valueUrl": websocket.url(options.base)},
            ],
        }

    types = frozenset({"Subscription"})
    return [
        Operation(
            "status",
            status,
            frozenset({"type", "instance"}),
            types,
            DEFINITIONS + "backport-subscription-status",
            access="data",
        ),
        Operation(
            "events",
            events,
            frozenset({"instance"}),
            types,
            DEFINITIONS + "backport-subscription-events",
            access="data",
        ),
        Operation(
            "get-ws-binding-token",
            ws_token,
            frozenset({"type", "instance"}),
            types,
            DEFINITIONS + "backport-subscription-get-ws-binding-token",
            access="data",
        ),
    ]


async def _subscription(
    service: FhirService, registry: Registry, call: OperationCall, id: str
) -> Subscription:
    rec = await service.current(call.context, "Subscription", id)
    return registry.all.get(id) or registry.read(fhirjson.loads(rec.data))


async def _head(service: FhirService, id: str) -> int:
    heads = await service.storage.queue_heads(queue_of(id))
    return heads.get(queue_of(id), 0)
