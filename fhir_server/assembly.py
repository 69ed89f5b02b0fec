"""The composition root: the one place that builds storage and the `FhirService`, plugs in
what the server offers, and starts its background duties.

- `open_service(settings)` opens the storage engine the settings name, builds the service
  (search registry, custom SearchParameters, terminology, HL7 v2 conversion, `$everything`,
  the orthosis order flow, remote monitoring, Bulk Data `$export`, the audit trail, and
  with authorization on the privacy rules: consents, security labels, masking;
  subscriptions)
  and closes the storage when the block ends. The HTTP app and every command use it, so
  every way in gets the same service.
- `open_auth(settings, service)` opens the SMART authorization server's store and signing
  keys, and lets the CapabilityStatement describe it (when authorization is on).
- `open_cds(settings, service, auth)` builds the CDS Hooks endpoints: the services the
  shipped packages offer (`cds_hooks.registry.collect`), their store in the auth store's
  database, and the check of CDS clients' JWTs (unless `FHIR_CDS_AUTH=off`).
- `start_background(settings, service)` starts what runs beside the requests (the HL7 v2
  inbox, MLLP listener and outbound feeds, when configured; first, design Tasks a stopped
  server left in progress are marked failed) on the leader process only (every duty a
  plug-in registered too), and stops it when the block ends.
- `open_audit(settings, service)` starts this process's audit trail (FHIR_AUDIT on): the
  queue the HTTP adapter and the HL7 v2 listener record exchanges in, written in batches;
  what is queued is written when the block ends.
- `prepare(settings)` readies the database and signing keys once, before `serve` starts
  its worker processes (and fails the design Tasks a stopped server left in progress).

Plug-ins attach through the service's named seams (`add_operation`, `add_validator`,
`watch`, `on_write`, `add_transform`, `add_trigger`, `use_codes`, `add_duty`); nothing below
this module imports them.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters.hl7v2.convert import ConvertOptions
from adapters.hl7v2.operations import install as install_hl7v2
from adapters.monitoring.plugin import Options as MonitoringOptions
from adapters.monitoring.plugin import install as install_monitoring
from adapters.monitoring.plugin import problem as monitoring_problem
from adapters.monitoring.plugin import warm_units as warm_monitoring_units
from adapters.orthotics.model import PrintLimits
from adapters.orthotics.plugin import install as install_orthotics
from adapters.orthotics.plugin import recover as recover_orthotics
from adapters.orthotics.workflow import Options as OrthoticsOptions
from cds_hooks.client_auth import CdsClientVerifier
from cds_hooks.endpoint import CdsHooks
from cds_hooks.jwks import JwksCache
from cds_hooks.models import code_systems as model_code_systems
from cds_hooks.registry import CdsServices, collect
from cds_hooks.response_check import origin
from cds_hooks.rules import value_sets as cds_value_sets
from cds_hooks.service import CdsService
from cds_hooks.store import CdsStore
from fhir_server.audit import install as install_audit
from fhir_server.audit.events import EventBuilder
from fhir_server.audit.records import hl7_exchange
from fhir_server.audit.trail import AuditTrail
from fhir_server.auth.discovery import rest_security
from fhir_server.auth.keys import KeyRing
from fhir_server.auth.policy import SmartPolicy
from fhir_server.auth.server import SmartAuthServer
from fhir_server.auth.store import AuthStore
from fhir_server.auth.urls import auth_urls
from fhir_server.auth.users import UserStore, open_user_store
from fhir_server.bulk import BulkExport
from fhir_server.bulk import Options as BulkOptions
from fhir_server.bulk import install as install_bulk
from fhir_server.bulk.scan import Transform, TransformFactory
from fhir_server.deidentify import PROFILES, Deidentifier, Profile
from fhir_server.interactions import custom_params
from fhir_server.interactions.everything import everything_operation
from fhir_server.interactions.service import FhirService
from fhir_server.model.validation import limits
from fhir_server.privacy import install as install_privacy
from fhir_server.search.limits import SearchLimits
from fhir_server.search.registry import SearchRegistry, build_registry
from fhir_server.settings import Settings
from fhir_server.storage.base import Storage
from fhir_server.storage.blobs import FileBlobStore
from fhir_server.storage.encryption import (
    ElementPaths,
    EncryptionKeyError,
    MasterKeys,
    encrypted,
    is_encrypted,
    unwrap,
)
from fhir_server.storage.leadership import LEASE_SECONDS, RENEW_EVERY, Leadership
from subscriptions.delivery import Options as SubscriptionOptions
from subscriptions.plugin import install as install_subscriptions
from terminology.registry import Terminology
from terminology.service import install as install_terminology

if TYPE_CHECKING:
    from adapters.hl7v2.runtime import Hl7Runtime

log = logging.getLogger("fhir_server")


def preflight(settings: Settings) -> str | None:
    """What stops the server from starting with `settings`, in one line, or None.

    Checked before anything is opened or written: the SQLite database file (not ours, a
    schema newer than this code), the key files the settings name (unreadable) and the
    default bands of remote monitoring."""
    for name, value in (
        ("FHIR_TLS_CERT_FILE", settings.tls_cert_file),
        ("FHIR_TLS_KEY_FILE", settings.tls_key_file),
    ):
        if value is None:
            continue
        try:
            with open(value, "rb") as file:
                file.read(1)
        except OSError as error:
            return f"{name} {value} cannot be read: {error.strerror}"
    if settings.monitoring == "on" and (
        problem := monitoring_problem(monitoring_options(settings))
    ):
        return problem
    if settings.storage == "sqlite":
        from pathlib import Path

        from fhir_server.storage.sqlite.schema import check_file

        problem = check_file(Path(settings.database))
        if problem or not Path(settings.database).exists():
            return problem or encryption_problem(settings, check_database=False)
    return encryption_problem(settings)


def encryption_problem(settings: Settings, *, check_database: bool = True) -> str | None:
    """Why the encryption settings do not fit (a bad key file, element path, or master
    key this database's data keys were not wrapped with), or None."""
    try:
        master_keys(settings)
        ElementPaths.from_setting(settings.encrypted_elements)
    except (EncryptionKeyError, ValueError) as error:
        return str(error)
    if not check_database:
        return None

    async def check() -> str | None:
        storage = make_storage(settings)
        await storage.open()
        try:
            await protect(settings, storage, build_registry())
        except EncryptionKeyError as error:
            return str(error)
        finally:
            await storage.close()
        return None

    return asyncio.run(check())


def master_keys(settings: Settings) -> MasterKeys | None:
    """The master keys the settings name, or None (encryption at rest off)."""
    key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
    return MasterKeys.configured(key, settings.encryption_key_file)


async def protect(settings: Settings, storage: Storage, registry: SearchRegistry) -> Storage:
    """`storage` behind encryption at rest when a master key is configured; raises
    `EncryptionKeyError` for a wrong key, or for an encrypted database and no key."""
    master = master_keys(settings)
    if master is None:
        if await is_encrypted(storage):
            raise EncryptionKeyError(
                "this database is encrypted at rest: set FHIR_ENCRYPTION_KEY_FILE "
                "(or FHIR_ENCRYPTION_KEY) to its master key"
            )
        return storage
    paths = ElementPaths.from_setting(settings.encrypted_elements)
    return await encrypted(storage, master, paths, registry)


def make_storage(settings: Settings) -> Storage:
    """The engine the settings name (not yet opened)."""
    if settings.storage == "mongodb":
        from fhir_server.storage.mongodb import MongoStorage

        return MongoStorage.from_url(settings.database)
    from fhir_server.storage.sqlite import SQLiteStorage

    return SQLiteStorage(settings.database, shared=settings.workers > 1)


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
    registry = build_registry()
    service = FhirService(
        await protect(settings, storage, registry),
        base_url=settings.base_url,
        default_count=settings.default_count,
        max_count=settings.max_count,
        registry=registry,
        search_limits=SearchLimits(
            max_query_bytes=settings.max_query_bytes,
            max_value_chars=settings.max_search_value_chars,
            max_sort_keys=settings.max_sort_keys,
            max_includes=settings.max_includes,
            max_or_values=settings.max_or_values,
            max_criteria=settings.max_search_criteria,
        ),
        max_inline_binary_bytes=settings.max_inline_binary_bytes,
    )
    if settings.auth == "on":  # off: the AllowAll of the foundation
        service.policy = SmartPolicy(service.registry, service.indexer)
        if settings.privacy == "on":
            await install_privacy(service, **privacy_options(settings))
    install_audit(service, open_reads=settings.auth == "off")  # read-only, even audit off
    service.add_operation(everything_operation())
    await custom_params.install(service)
    terminology = await install_terminology(service, shipped_terminology())
    install_hl7v2(service, convert_options(settings))
    await install_orthotics(service, terminology.put, orthotics_options(settings))
    if settings.monitoring == "on":
        install_monitoring(service, monitoring_options(settings))
    await deidentified_exports(service, bulk_export(settings, service))
    await install_subscriptions(service, subscription_options(settings))
    return service


def bulk_export(settings: Settings, service: FhirService) -> BulkExport:
    """Bulk Data `$export`: its files in FHIR_EXPORT_DIR, else in the database's store."""
    files = (
        FileBlobStore(settings.export_dir)
        if settings.export_dir
        else service.storage.blobs("exports")
    )
    options = BulkOptions(
        file_bytes=settings.export_file_bytes,
        retention_seconds=settings.export_retention,
        requires_token=settings.auth == "on",
    )
    return install_bulk(service, files, options)


DEIDENTIFY_SECRET = "deidentify:secret"


async def deidentified_exports(service: FhirService, bulk: BulkExport) -> None:
    """Offer each de-identification profile to `$export` (`_deidentify=safe-harbor`): the
    pseudonym key of a job is derived from a secret kept in the database and the job id, so
    pseudonyms and date shifts agree across the job's types and after a resume, and differ
    between exports. (`prepare` makes the secret before worker processes start.)"""
    secret = await service.storage.load_state(DEIDENTIFY_SECRET)
    if secret is None:
        secret = secrets.token_bytes(32)
        await service.storage.save_state(DEIDENTIFY_SECRET, secret)

    def profile(name: Profile) -> TransformFactory:
        def make(job_id: str) -> Transform:
            key = hmac.new(secret, job_id.encode(), hashlib.sha256).digest()
            return Deidentifier(name, key).transform

        return make

    for name in PROFILES:
        bulk.add_transform(name, profile(name))


def privacy_options(settings: Settings) -> dict[str, Any]:
    """The clearance and masking tables and the research clients the settings give
    (the shipped tables where they give none)."""
    options: dict[str, Any] = {
        "research_clients": frozenset(
            c.strip() for c in settings.privacy_research_clients.split(",") if c.strip()
        )
    }
    if settings.privacy_clearance:
        options["clearance"] = {r: frozenset(c) for r, c in settings.privacy_clearance.items()}
    if settings.privacy_masking:
        options["masking"] = settings.privacy_masking
    return options


def public_base(settings: Settings) -> str:
    """The FHIR base URL others reach this server at (FHIR_BASE_URL, else host and port)."""
    if settings.base_url:
        return settings.base_url.rstrip("/")
    scheme = "https" if settings.tls_cert_file else "http"
    return f"{scheme}://{settings.host}:{settings.port}/fhir"


def subscription_options(settings: Settings) -> SubscriptionOptions:
    """Where notifications may go and how delivery retries (FHIR_SUBSCRIPTION_*)."""
    hosts = {h.strip().lower() for h in settings.subscription_allowed_hosts.split(",")}
    return SubscriptionOptions(
        base=public_base(settings),
        allowed_hosts=frozenset(h for h in hosts if h),
        timeout=settings.subscription_timeout,
        backoff=settings.subscription_backoff,
        max_backoff=settings.subscription_max_backoff,
        error_after=settings.subscription_error_after,
        keep_events=settings.subscription_keep_events,
    )


def shipped_terminology() -> Terminology:
    """The R4 core content plus the value sets the CDS rule services and the local
    CodeSystems the CDS model packages ship. The server's own CodeSystems, ValueSets and
    ConceptMaps are loaded after these, so a stored resource with the same url takes
    precedence."""
    terminology = Terminology()
    for resource in [*cds_value_sets(), *model_code_systems()]:
        terminology.put(resource)
    return terminology


def orthotics_options(settings: Settings) -> OrthoticsOptions:
    """Who makes the orthoses and what the printer takes (`$design-orthosis`)."""
    limits = PrintLimits(
        build_volume_mm=settings.orthotics_build_volume_mm,
        max_faces=settings.orthotics_max_faces,
    )
    return OrthoticsOptions(manufacturer=settings.orthotics_manufacturer, limits=limits)


def monitoring_options(settings: Settings) -> MonitoringOptions:
    """Default bands and default recipients of remote monitoring."""
    recipients = tuple(r.strip() for r in settings.monitoring_recipients.split(",") if r.strip())
    return MonitoringOptions(
        bands=dict(settings.monitoring_bands),
        recipients=recipients,
    )


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
        engine = unwrap(service.storage) if service else None
        async with open_user_store(settings, engine) as users:
            yield Auth(store, keys, SmartAuthServer(settings, store, keys), users)
    finally:
        await asyncio.to_thread(store.close)


@asynccontextmanager
async def open_cds(
    settings: Settings, auth: Auth, services: Iterable[CdsService] | None = None
) -> AsyncIterator[CdsHooks]:
    """The CDS Hooks endpoints over the shipped services (or `services`), their HTTP client
    (JWK sets, prefetch from other FHIR servers) closed when the block ends."""
    import httpx

    offered = collect(settings) if services is None else CdsServices(services)
    store = CdsStore(auth.store.documents)
    apps = await asyncio.to_thread(auth.store.list_clients)
    smart = {origin(uri) for app in apps for uri in app.get("redirect_uris") or ()}
    async with httpx.AsyncClient(follow_redirects=False) as http:
        verifier = None
        if settings.cds_auth == "on":
            verifier = CdsClientVerifier(store, JwksCache(http))
        else:
            log.warning(
                "CDS Hooks client authentication is OFF (FHIR_CDS_AUTH=off): anyone may call "
                "the CDS services; for local experiments only"
            )
        yield CdsHooks(offered, store, verifier=verifier, http=http, smart_origins=smart)


@asynccontextmanager
async def open_audit(settings: Settings, service: FhirService) -> AsyncIterator[AuditTrail | None]:
    """This process's audit trail (None with FHIR_AUDIT=off), flushed when the block ends."""
    if settings.audit == "off":
        log.warning("the audit trail is OFF (FHIR_AUDIT=off): no AuditEvents are recorded")
        yield None
        return
    key = None
    if settings.audit_signing_key_file:
        with open(settings.audit_signing_key_file, "rb") as file:
            key = file.read().strip()
    site = settings.base_url or f"http://{settings.host}:{settings.port}/fhir"
    trail = AuditTrail(
        service,
        EventBuilder(service.registry, service.indexer, site),
        flush_seconds=settings.audit_flush_seconds,
        index_seconds=settings.audit_index_seconds,
        batch_size=settings.audit_batch_size,
        max_queued=settings.audit_max_queued,
        key=key,
    )
    await trail.start()
    service.before_reading("AuditEvent", trail.catch_up)  # auditors see every access
    try:
        yield trail
    finally:
        await trail.close()


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

    leadership: Leadership
    hl7: Hl7Runtime | None = None


@asynccontextmanager
async def start_background(
    settings: Settings, service: FhirService, audit: AuditTrail | None = None
) -> AsyncIterator[Background]:
    """Start the background duties the settings ask for; stop them when the block ends.

    Duties run in one process at a time, the leader (`storage.leadership`): those the
    service's plug-ins registered (`FhirService.add_duty`) and HL7 v2's listener, inbox and
    outbound delivery. A lone process (`workers` 1, or 0 when not started by `serve`)
    waits at start for a lease a crashed predecessor left, so it leads before it serves."""
    single = settings.workers <= 1
    if single:  # with workers, `prepare` did it before any started
        await recover_orthotics(service)  # design Tasks a stopped server left in progress
    if settings.monitoring == "on" and settings.monitoring_warm_units:
        warm_monitoring_units()
    duties = list(service.duties)
    if settings.storage == "sqlite" and not single:
        from fhir_server.storage.sqlite import SQLiteStorage

        engine = unwrap(service.storage)
        if isinstance(engine, SQLiteStorage):  # checkpoints, planner statistics
            duties.append(("sqlite upkeep", engine.maintenance_duty))
    hl7 = None
    if hl7_enabled(settings):
        from adapters.hl7v2.runtime import STALE_SECONDS, Hl7Runtime  # only HL7 v2 users load it

        runtime = Hl7Runtime.from_settings(settings, service, convert_options(settings))
        if audit is not None:
            runtime.observe(lambda ack, peer, seen: audit.record(hl7_exchange(ack, peer, seen)))
        hl7 = await runtime.start(lead=False)
        grace = 0.0 if single else STALE_SECONDS  # other workers may be mid-message
        duties.append(("hl7v2", lambda: runtime.lead_duty(grace)))
    leadership = Leadership(service.storage, duties)
    try:
        await leadership.start(wait=LEASE_SECONDS + RENEW_EVERY if single else 0.0)
        _settle_heap()
        yield Background(leadership, hl7)
    finally:
        await leadership.stop()
        if hl7 is not None:
            await hl7.stop(settings.shutdown_timeout)


async def prepare(settings: Settings) -> None:
    """Make the database and the signing keys ready once, before worker processes start
    (so they do not race to migrate the schema or each create a first key), and fail the
    design Tasks a stopped server left in progress (no worker runs one yet)."""
    async with open_service(settings) as service, open_auth(settings):
        await recover_orthotics(service)


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
