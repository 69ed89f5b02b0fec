"""The composition root: the one place that builds storage and the `FhirService`, plugs in
what the server offers, and starts its background duties.

- `open_service(settings)` opens the storage engine the settings name, builds the service
  (search registry, custom SearchParameters, terminology, HL7 v2 conversion, `$everything`)
  and closes the storage when the block ends. The HTTP app and every command use it, so
  every way in gets the same service.
- `open_auth(settings, service)` opens the SMART authorization server's store and signing
  keys, and lets the CapabilityStatement describe it (when authorization is on).
- `start_background(settings, service)` starts what runs beside the requests (today the
  HL7 v2 inbox, MLLP listener and outbound feeds, when configured) and stops it when the
  block ends.

Plug-ins attach through the service's named seams (`add_operation`, `add_validator`,
`watch`, `on_write`, `use_codes`); nothing below this module imports them.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.hl7v2.convert import ConvertOptions
from adapters.hl7v2.operations import install as install_hl7v2
from fhir_server.auth.discovery import rest_security
from fhir_server.auth.keys import KeyRing
from fhir_server.auth.policy import SmartPolicy
from fhir_server.auth.server import SmartAuthServer
from fhir_server.auth.store import AuthStore
from fhir_server.auth.urls import auth_urls
from fhir_server.auth.users import UserStore, open_user_store
from fhir_server.interactions import custom_params
from fhir_server.interactions.everything import everything_operation
from fhir_server.interactions.service import FhirService
from fhir_server.model.validation import limits
from fhir_server.search.limits import SearchLimits
from fhir_server.search.registry import build_registry
from fhir_server.settings import Settings
from fhir_server.storage.base import Storage
from terminology.service import install as install_terminology

if TYPE_CHECKING:
    from adapters.hl7v2.runtime import Hl7Runtime


def make_storage(settings: Settings) -> Storage:
    """The engine the settings name (not yet opened)."""
    if settings.storage == "mongodb":
        from fhir_server.storage.mongodb import MongoStorage

        return MongoStorage.from_url(settings.database)
    from fhir_server.storage.sqlite import SQLiteStorage

    return SQLiteStorage(settings.database)


@asynccontextmanager
async def open_service(
    settings: Settings, storage: Storage | None = None
) -> AsyncIterator[FhirService]:
    """A ready service over the settings' storage (or `storage`), closed when the block ends."""
    store = storage or make_storage(settings)
    await store.open()
    try:
        yield await build_service(settings, store)
    finally:
        await store.close()


async def build_service(settings: Settings, storage: Storage) -> FhirService:
    """A service over an opened `storage`, configured by `settings`."""
    limits.configure(
        max_string_chars=settings.max_string_chars, max_depth=settings.max_resource_depth
    )
    service = FhirService(
        storage,
        base_url=settings.base_url,
        default_count=settings.default_count,
        max_count=settings.max_count,
        registry=build_registry(),
        search_limits=SearchLimits(
            max_query_bytes=settings.max_query_bytes,
            max_value_chars=settings.max_search_value_chars,
            max_sort_keys=settings.max_sort_keys,
            max_includes=settings.max_includes,
            max_or_values=settings.max_or_values,
            max_criteria=settings.max_search_criteria,
        ),
    )
    if settings.auth == "on":  # off: the AllowAll of the foundation
        service.policy = SmartPolicy(service.registry, service.indexer)
    service.add_operation(everything_operation())
    await custom_params.install(service)
    await install_terminology(service)
    install_hl7v2(service, convert_options(settings))
    return service


@dataclass(frozen=True, slots=True)
class Auth:
    """The SMART authorization server's parts: its store, signing keys and protocol."""

    store: AuthStore
    keys: KeyRing
    server: SmartAuthServer
    users: UserStore


@asynccontextmanager
async def open_auth(settings: Settings, service: FhirService | None = None) -> AsyncIterator[Auth]:
    """The auth store (opened), its KeyRing (loaded) and the server; closed at the end."""
    store = AuthStore.from_settings(settings)
    await asyncio.to_thread(store.open)
    try:
        keys = KeyRing(
            store,
            key_lifetime=settings.auth_key_lifetime,
            longest_token=settings.auth_access_token_lifetime,
        )
        await keys.load()
        if service is not None and settings.auth == "on":
            service.describe_security(lambda base: rest_security(auth_urls(settings, base)))
        async with open_user_store(settings, service.storage if service else None) as users:
            yield Auth(store, keys, SmartAuthServer(settings, store, keys), users)
    finally:
        await asyncio.to_thread(store.close)


def convert_options(settings: Settings) -> ConvertOptions:
    """How HL7 v2 messages map to FHIR here: for `$convert-hl7v2`, the inbox and replays."""
    return ConvertOptions(
        timezone=settings.hl7_timezone,
        identifier_systems=dict(settings.hl7_identifier_systems),
        strict_processing_id=settings.hl7_strict_processing_id,
    )


def hl7_enabled(settings: Settings) -> bool:
    """HL7 v2 runs when a listener, an outbound destination or an inbox is configured."""
    return bool(settings.mllp_port or settings.hl7_destinations.strip() or settings.hl7_inbox)


@dataclass(frozen=True, slots=True)
class Background:
    """What `start_background` started; `hl7` is None when HL7 v2 is not configured."""

    hl7: Hl7Runtime | None = None


@asynccontextmanager
async def start_background(settings: Settings, service: FhirService) -> AsyncIterator[Background]:
    """Start the background duties the settings ask for; stop them when the block ends."""
    if not hl7_enabled(settings):
        _settle_heap()
        yield Background()
        return
    from adapters.hl7v2.runtime import Hl7Runtime  # only deployments that use HL7 v2 load it

    hl7 = await Hl7Runtime.from_settings(settings, service, convert_options(settings)).start()
    try:
        _settle_heap()
        yield Background(hl7=hl7)
    finally:
        await hl7.stop()


FULL_COLLECTION_EVERY = 100  # gen-1 collections between full ones (CPython's default: 10)


def _settle_heap() -> None:
    """Full garbage collections that do not stall every request or message.

    CPython's cyclic collector scans the whole old generation on each full collection, on
    the thread that allocates, so on the event loop. What the server built to start (search
    registry, terminology, models) lives as long as the process and would be rescanned each
    time a large request (a 10,000-entry transaction is millions of objects) grows the heap,
    for hundreds of milliseconds a time. So it is frozen out of the collector, and full
    collections come ten times less often; young garbage is collected as usual, and
    reference counting frees everything without cycles."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
