"""Server settings, from the environment (FHIR_*) and command-line overrides."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob a deployment sets; each field is read from `FHIR_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="FHIR_", extra="ignore")

    storage: Literal["sqlite", "mongodb"] = "sqlite"
    database: str = "./data/fhir.db"  # SQLite file path, or a mongodb:// URL
    base_url: str | None = None  # public base, e.g. https://fhir.example.org/fhir
    max_body_bytes: int = 64 * 1024 * 1024  # larger request bodies get 413
    max_binary_bytes: int = 2 * 1024 * 1024 * 1024 - 1  # raw Binary uploads (blob store); 413
    max_inline_binary_bytes: int = 16 * 1024 * 1024  # larger Binaries: raw reads only (413)
    default_count: int = 20
    max_count: int = 1000
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line
    metrics: Literal["loopback", "token", "off"] = "loopback"  # who may read GET /metrics
    metrics_token: str | None = None  # the bearer token /metrics needs with metrics=token
    workers: int = 0  # HTTP worker processes; 0: one per usable core (`serve` sets it)
    # HL7 v2 (adapters/hl7v2): MLLP listener, durable inbox, outbound feeds
    mllp_port: int = 0  # 0: no MLLP listener
    mllp_host: str | None = None  # default: `host`
    mllp_max_message_bytes: int = 10 * 1024 * 1024  # larger messages get AR 207
    mllp_max_connections: int = 100
    mllp_idle_timeout: float = 300.0  # seconds of silence before a connection is closed
    mllp_garbage_timeout: float = 10.0  # seconds of bytes without a start block before closing
    hl7_inbox: str | None = None  # default `<database>.hl7inbox.db`; required with MongoDB
    hl7_destinations: str = ""  # JSON list of {"name","host","port","events",...}
    hl7_timezone: str = "UTC"  # for HL7 times without an offset
    hl7_identifier_systems: dict[str, str] = {}  # assigning authority -> identifier system
    hl7_strict_processing_id: bool = False  # MSH-11 P/T/D only; default: empty is P, any accepted
    hl7_application: str = "FHIR-SERVER"  # MSH-3 of the messages we send
    hl7_facility: str = ""  # MSH-4 of the messages we send
    hl7_outbound_attempts: int = 5
    hl7_outbound_backoff: float = 1.0  # seconds before the first retry, doubled each time
    hl7_ack_timeout: float = 10.0  # seconds to wait for a destination's ACK
    # CDS Hooks model packages beyond the shipped ones: folders, separated like PATH
    cds_model_dirs: str = ""
    cds_warm_units: bool = True  # build the UCUM unit table at start (else on first need)
    # request limits (search): beyond them a search is a 400 naming the parameter
    max_query_bytes: int = 64 * 1024  # all search parameters (query string or form body)
    max_search_value_chars: int = 2048  # one search value (one side of a comma)
    max_sort_keys: int = 16  # keys of _sort
    max_includes: int = 32  # _include and _revinclude parameters together
    max_or_values: int = 1000  # comma-separated (OR) values of one parameter
    max_search_criteria: int = 100  # criteria (AND-ed parameters) of one search
    # request limits (HTTP)
    allowed_hosts: str = ""  # Host names accepted, comma-separated (`name` or `name:port`,
    #   `*` any); default: the bound host and localhost names with the port
    cors_origins: str = "*"  # browser origins allowed to call the API, comma-separated; "": none
    header_timeout: float = 10.0  # seconds for a request's head (line and headers) to arrive
    body_timeout: float = 30.0  # seconds for a request body, plus 1 s per `body_min_rate` bytes
    body_min_rate: int = 64 * 1024  # bytes per second a slow upload must keep up
    keep_alive_timeout: int = 5  # seconds an idle keep-alive connection stays open
    max_connections: int = 1000  # open HTTP connections; a request beyond them gets 503
    tls_cert_file: str | None = None  # serve HTTPS with this certificate chain (PEM)...
    tls_key_file: str | None = None  # ...and this private key (PEM); both or neither
    shutdown_timeout: float = 30.0  # seconds SIGTERM waits for in-flight requests and messages
    # Bulk Data export ($export): where the NDJSON files go and how long they stay
    export_dir: str | None = None  # default: the database's own store (`<database>.exports/`
    #   beside a SQLite file, GridFS bucket `exports` on MongoDB); a shared folder otherwise
    export_retention: float = 3600.0  # seconds a finished export's files are kept
    export_file_bytes: int = 64 * 1024 * 1024  # an output file is split beyond this size
    # SMART on FHIR
    auth: Literal["on", "off"] = "on"  # "off": no bearer tokens checked (loopback only)
    auth_database: str | None = None  # default `<database>.auth.db`; MongoDB: the FHIR database
    auth_issuer: str | None = None  # default: the public base's origin + "/auth"
    auth_access_token_lifetime: int = 3600  # seconds
    auth_backend_token_lifetime: int = 300  # seconds; Backend Services tokens: at most 300
    auth_refresh_token_lifetime: int = 30 * 86400  # seconds (offline_access)
    auth_key_lifetime: int = 90 * 86400  # seconds a signing key verifies tokens after creation
    # SMART on FHIR: the sign-in pages
    auth_login_attempts: int = 5  # failed sign-ins per user name before a lockout
    auth_login_lockout: float = 300.0  # seconds a locked-out name waits after its last failure
    auth_session_lifetime: int = 3600  # seconds a browser session lives after its last use
    auth_clinician_scope: Literal["organization", "all"] = "organization"  # patients offered
    # audit trail (fhir_server.audit): an AuditEvent for every HTTP and HL7 v2 exchange
    audit: Literal["on", "off"] = "on"
    audit_flush_seconds: float = 1.0  # each process writes its queue at least this often
    audit_index_seconds: float = 60.0  # journaled read events become AuditEvents this often
    audit_batch_size: int = 500  # events per batch (and per chain record)
    audit_max_queued: int = 100_000  # records kept while the database refuses batches
    audit_signing_key_file: str | None = None  # a secret file: batches signed (HMAC-SHA256)
    # CDS Hooks (cds_hooks): "off" accepts calls without a client JWT (local experiments only)
    cds_auth: Literal["on", "off"] = "on"
    # orthotics (adapters/orthotics): $design-orthosis
    orthotics_manufacturer: str = "Custom orthosis manufacturer (set FHIR_ORTHOTICS_MANUFACTURER)"
    orthotics_build_volume_mm: tuple[float, float, float] = (300.0, 300.0, 300.0)  # JSON list
    orthotics_max_faces: int = 200_000  # faces of one insole mesh the slicer accepts
    # remote monitoring (adapters/monitoring): readings checked and converted, alerts raised
    monitoring: Literal["on", "off"] = "on"
    monitoring_bands: dict[str, tuple[float | None, float | None]] = {}  # JSON: LOINC code ->
    #   [low, high] in the stored unit, replacing the shipped default band ([null, null]: none)
    monitoring_recipients: str = ""  # references told when a patient has no plan, comma-separated
    monitoring_warm_units: bool = True  # build the UCUM unit table at start (else on first need)
    # encryption at rest (storage/encryption): on when a master key is configured
    encryption_key_file: str | None = None  # JSON key ring {"active": id, "keys": {id: b64}}
    encryption_key: SecretStr | None = None  # or one key: base64 of 32 bytes
    encrypted_elements: str = "default"  # element paths, comma-separated; "default": the list
    # privacy (fhir_server.privacy): consents, security labels, masking; with auth on only
    privacy: Literal["on", "off"] = "on"
    privacy_clearance: dict[str, list[str]] = {}  # role -> labels it is cleared for (JSON)
    privacy_masking: dict[str, dict[str, Literal["last4", "hidden"]]] = {}  # role -> kind -> rule
    privacy_research_clients: str = ""  # client ids acting for research (HRESCH), comma-separated
    # Subscriptions (subscriptions/): rest-hook endpoints must be https, or http to these hosts
    subscription_allowed_hosts: str = ""  # host names, comma-separated ("*": any; tests only)
    subscription_timeout: float = 10.0  # seconds per notification request
    subscription_backoff: float = 1.0  # seconds before the first retry, doubled each time...
    subscription_max_backoff: float = 60.0  # ...up to this (also the probe interval in error)
    subscription_error_after: int = 5  # failed attempts in a row before the status is error
    subscription_keep_events: int = 1000  # delivered events kept per subscription for $events
    # request limits (resources)
    max_string_chars: int = 1024 * 1024  # per primitive value but base64Binary and xhtml
    max_resource_depth: int = 64  # JSON objects nested in one resource
