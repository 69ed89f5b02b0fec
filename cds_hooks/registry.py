"""The CDS services this server offers: one `CdsServices` collection, built at start.

https://cds-hooks.hl7.org/2.0/#discovery -- "A CDS Service provider exposes its discovery
endpoint at `{baseURL}/cds-services`"; each service has an `id` unique among them, used in
its URL (`{baseURL}/cds-services/{id}`).

Packages of services plug in through one function each, `services(settings)`, that returns
their `CdsService`s (e.g. `cds_hooks.rules.services`, `cds_hooks.models.services`).
`PROVIDERS` below is the single place where such a function is listed; the assembly calls
`collect(settings)` at start, and a test may hand its own services in instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from cds_hooks import models, rules
from cds_hooks.prefetch import template_problems
from cds_hooks.service import JSON, CdsService
from fhir_server.settings import Settings

Provider = Callable[[Settings], Iterable[CdsService]]

# The packages of services the server ships, each as its `services(settings)` function.
PROVIDERS: tuple[Provider, ...] = (rules.services, models.services)

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # one URL path segment, no escaping


class CdsServices:
    """Services by id, in the order they were added (the order discovery lists them)."""

    def __init__(self, services: Iterable[CdsService] = ()) -> None:
        self._by_id: dict[str, CdsService] = {}
        for service in services:
            self.add(service)

    def add(self, service: CdsService) -> None:
        """Offer `service`; its id must be a plain path segment not already taken, and its
        prefetch templates relative FHIR queries with known tokens."""
        definition = service.definition
        if not _ID.fullmatch(definition.id):
            raise ValueError(f"a CDS service id must match {_ID.pattern}: {definition.id!r}")
        if definition.id in self._by_id:
            raise ValueError(f"two CDS services have the id {definition.id!r}")
        wrong = [p for t in definition.prefetch.values() for p in template_problems(t)]
        if wrong:
            raise ValueError(f"the CDS service {definition.id}: {'; '.join(wrong)}")
        self._by_id[definition.id] = service

    def get(self, service_id: str) -> CdsService | None:
        return self._by_id.get(service_id)

    def discovery(self) -> JSON:
        """The body of `GET /cds-services`."""
        return {"services": [s.definition.discovery() for s in self._by_id.values()]}

    def __iter__(self) -> Iterator[CdsService]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


def collect(settings: Settings, providers: Iterable[Provider] = PROVIDERS) -> CdsServices:
    """Every service the `providers` offer under `settings`."""
    return CdsServices(service for provider in providers for service in provider(settings))
