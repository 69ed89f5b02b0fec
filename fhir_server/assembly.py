"""Putting the server together: one place that builds a ready `FhirService`.

The HTTP app and the CLI both start here, so every way in gets the same service: the
storage engine, the search registry (its own: custom SearchParameters change it), and the
terminology service with its operations, validators and search modifiers.
"""

from __future__ import annotations

from adapters.hl7v2.convert import ConvertOptions
from adapters.hl7v2.operations import install as install_hl7v2
from fhir_server.interactions import custom_params
from fhir_server.interactions.service import FhirService
from fhir_server.model.validation import limits
from fhir_server.search.registry import build_registry
from fhir_server.settings import Settings
from fhir_server.storage.base import Storage
from terminology.service import install


async def build_service(settings: Settings, storage: Storage) -> FhirService:
    """A service over an opened `storage`, configured by `settings`."""
    limits.configure(max_string_chars=settings.max_string_chars,
                     max_depth=settings.max_resource_depth)
    service = FhirService(
        storage, base_url=settings.base_url, default_count=settings.default_count,
        max_count=settings.max_count, registry=build_registry(),
    )
    await custom_params.install(service)
    await install(service)
    install_hl7v2(service, ConvertOptions(timezone=settings.hl7_timezone,
                                          identifier_systems=dict(settings.hl7_identifier_systems)))
    return service
