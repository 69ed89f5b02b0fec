"""The subscriptions this process knows, kept in step with the database by `watch`."""

from __future__ import annotations

import logging
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.model import fhirjson
from fhir_server.search.registry import SearchRegistry
from fhir_server.storage.base import StoredResource
from subscriptions import model
from subscriptions.matching import Matcher
from subscriptions.topics import Topics

log = logging.getLogger("fhir_server.subscriptions")


class Registry:
    """Every stored Subscription (`all`), the deliverable ones indexed (`matcher`), topics."""

    def __init__(self, search: SearchRegistry, codes: Any = None) -> None:
        self.search = search
        self.codes = codes
        self.topics = Topics()
        self.all: dict[str, model.Subscription] = {}
        self.matcher = Matcher()
        self.changes = 0  # counts the versions applied: what watches the registry re-reads

    def read(self, resource: dict[str, Any]) -> model.Subscription:
        return model.read(resource, self.search, self.topics.by_url, self.codes)

    def apply(self, rec: StoredResource) -> None:
        """Take in a committed version of a Subscription."""
        self.changes += 1
        self.all.pop(rec.id, None)
        self.matcher.drop(rec.id)
        if rec.deleted:
            return
        try:
            sub = self.read(fhirjson.loads(rec.data))
        except FhirError as error:  # e.g. its topic was deleted since: it cannot work
            log.warning("Subscription/%s is not in effect: %s", rec.id, error.diagnostics)
            return
        self.all[sub.id] = sub
        self.matcher.put(sub)
