"""Privacy: patient consents, security labels and role-based masking, enforced through
the access-policy seam (`PrivacyPolicy` wraps the scope policy) and the disclosure seam
of `FhirService`. `install` plugs it into a service; the core never imports it."""

from __future__ import annotations

from collections.abc import Mapping

from fhir_server.interactions.service import FhirService
from fhir_server.privacy.consent import ConsentIndex
from fhir_server.privacy.labels import DEFAULT_CLEARANCE
from fhir_server.privacy.masking import DEFAULT_MASKING, Rule
from fhir_server.privacy.policy import PrivacyPolicy

__all__ = ["ConsentIndex", "PrivacyPolicy", "install"]


async def install(
    service: FhirService,
    *,
    clearance: Mapping[str, frozenset[str]] = DEFAULT_CLEARANCE,
    masking: Mapping[str, Mapping[str, Rule]] = DEFAULT_MASKING,
    research_clients: frozenset[str] = frozenset(),
) -> PrivacyPolicy:
    """Wrap `service.policy` in a `PrivacyPolicy`, make it the service's disclosure, and
    keep its consents in step with the stored Consents (in every server process)."""
    consents = ConsentIndex()
    policy = PrivacyPolicy(
        service.policy,
        service.registry,
        consents,
        indexer=service.indexer,
        clearance=clearance,
        masking=masking,
        research_clients=research_clients,
    )
    service.policy = policy
    service.disclosure = policy
    await service.watch(("Consent",), consents.apply)
    return policy
