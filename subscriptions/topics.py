"""SubscriptionTopics, defined by Basic resources (the Backport IG's R4 representation).

R4 has no SubscriptionTopic resource; the Backport IG carries the R5 one into R4 as a
`Basic` with cross-version extensions. This server reads this shape of it:

    {"resourceType": "Basic",
     "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types",
                          "code": "SubscriptionTopic"}]},
     "extension": [
       {"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.url",
        "valueUri": "http://example.org/topic/observations"},
       {"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.resourceTrigger",
        "extension": [{"url": "resource", "valueUri": "Observation"}]}]}

Each `resourceTrigger` names a resource type (a type name or its StructureDefinition URL)
whose creates and updates are events of the topic; a Subscription to the topic narrows
them with filter criteria (`Type?params`) of those types.
"""

from __future__ import annotations

from typing import Any

from fhir_server.model import fhirjson
from fhir_server.storage.base import StoredResource

R5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
URL = R5 + "url"
TRIGGER = R5 + "resourceTrigger"
TYPES = "http://hl7.org/fhir/fhir-types"


def topic_of(resource: dict[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    """(canonical, resource types) of a Basic that defines a SubscriptionTopic, else None."""
    codings = (resource.get("code") or {}).get("coding") or ()
    if not any(
        isinstance(c, dict) and c.get("system") == TYPES and c.get("code") == "SubscriptionTopic"
        for c in codings
    ):
        return None
    url: str | None = None
    types: list[str] = []
    for ext in resource.get("extension") or ():
        if not isinstance(ext, dict):
            continue
        if ext.get("url") == URL and isinstance(ext.get("valueUri"), str):
            url = ext["valueUri"]
        elif ext.get("url") == TRIGGER:
            for part in ext.get("extension") or ():
                value = part.get("valueUri") if isinstance(part, dict) else None
                if part.get("url") == "resource" and isinstance(value, str):
                    types.append(value.rsplit("/", 1)[-1])
    return (url, tuple(dict.fromkeys(types))) if url and types else None


class Topics:
    """The topics the stored Basic resources define, kept in step by `watch`."""

    def __init__(self) -> None:
        self.by_url: dict[str, tuple[str, ...]] = {}
        self._of_basic: dict[str, str] = {}  # Basic id -> its topic url

    def apply(self, rec: StoredResource) -> None:
        old = self._of_basic.pop(rec.id, None)
        if old is not None:
            self.by_url.pop(old, None)
        if rec.deleted:
            return
        found = topic_of(fhirjson.loads(rec.data))
        if found is not None:
            self.by_url[found[0]] = found[1]
            self._of_basic[rec.id] = found[0]
