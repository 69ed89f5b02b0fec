"""How subscriptions attach to the FHIR service (called by the assembly).

- a validator checks each Subscription written (criteria, channel, endpoint allow-list);
- the access policy is wrapped so that each create or update of a Subscription records
  its writer (launch patient and scopes) in the resource: notifications carry only what
  that writer may read (`outbox.visible`);
- `watch` keeps every process's registry of topics and subscriptions in step;
- a trigger on every type queues matches inside the writing transaction (`outbox`);
- `$status`, `$events`, `$get-ws-binding-token` (`operations`);
- delivery of rest-hook notifications is a leader duty (`delivery`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.context import AccessContext, AccessPolicy, Action
from fhir_server.search.conditions import SearchQuery
from fhir_server.storage.base import StoredResource
from subscriptions import model, operations
from subscriptions.delivery import Delivery, Options
from subscriptions.outbox import Outbox
from subscriptions.registry import Registry

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService


async def install(service: FhirService, options: Options) -> Registry:
    registry = Registry(service.registry, service.codes)
    await service.watch(("Basic",), registry.topics.apply)
    await service.watch(("Subscription",), registry.apply)

    def check(resource: dict[str, Any]) -> None:
        if resource.get("resourceType") == "Subscription":
            model.check_endpoint(registry.read(resource), options.allowed_hosts)

    service.add_validator(check)
    service.policy = RecordsCreator(service.policy)
    service.add_trigger(sorted(service.resource_types), Outbox(registry).trigger)
    for operation in operations.operations_for(registry, options):
        service.add_operation(operation)
    delivery = Delivery(service, registry, options)
    service.add_duty("subscription delivery", delivery.duty)
    return registry


class RecordsCreator:
    """The service's policy, which also stamps a Subscription being created or updated
    with its writer (`model.CREATOR`); a client's own copy of the stamp is replaced."""

    def __init__(self, inner: AccessPolicy) -> None:
        self.inner = inner

    def check(self, ctx: AccessContext, action: Action, resource_type: str | None) -> None:
        self.inner.check(ctx, action, resource_type)

    def check_resource(
        self, ctx: AccessContext, action: Action, resource_type: str, resource: dict[str, Any]
    ) -> None:
        self.inner.check_resource(ctx, action, resource_type, resource)
        if resource_type == "Subscription" and action in ("create", "update"):
            stamp_creator(ctx, resource)

    def visible(self, ctx: AccessContext, rec: StoredResource) -> bool:
        return self.inner.visible(ctx, rec)

    def restrict(self, ctx: AccessContext, query: SearchQuery) -> SearchQuery:
        return self.inner.restrict(ctx, query)


def stamp_creator(ctx: AccessContext, resource: dict[str, Any]) -> None:
    others = [
        e
        for e in resource.get("extension") or ()
        if not (isinstance(e, dict) and e.get("url") == model.CREATOR)
    ]
    if not ctx.system:
        others.append(model.creator_stamp(ctx))
    if others:
        resource["extension"] = others
    else:
        resource.pop("extension", None)
