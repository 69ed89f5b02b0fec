"""Server settings, from the environment (FHIR_*) and command-line overrides."""

from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob a deployment sets; each field is read from `FHIR_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="FHIR_", extra="ignore")

    storage: Literal["sqlite", "mongodb"] = "sqlite"
    database: str = "./data/fhir.db"  # SQLite file path, or a mongodb:// URL
    base_url: str | None = None  # public base, e.g. https://fhir.example.org/fhir
    max_body_bytes: int = 64 * 1024 * 1024  # larger request bodies get 413
    default_count: int = 20
    max_count: int = 1000
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    # HL7 v2 (adapters/hl7v2): MLLP listener, durable inbox, outbound feeds
    mllp_port: int = 0  # 0: no MLLP listener
    mllp_host: str | None = None  # default: `host`
    mllp_max_message_bytes: int = 10 * 1024 * 1024  # larger messages get AR 207
    mllp_max_connections: int = 100
    mllp_idle_timeout: float = 300.0  # seconds of silence before a connection is closed
    hl7_inbox: str | None = None  # default `<database>.hl7inbox.db`; required with MongoDB
    hl7_destinations: str = ""  # JSON list of {"name","host","port","events",...}
    hl7_timezone: str = "UTC"  # for HL7 times without an offset
    hl7_identifier_systems: dict[str, str] = {}  # assigning authority -> identifier system
    hl7_application: str = "FHIR-SERVER"  # MSH-3 of the messages we send
    hl7_facility: str = ""  # MSH-4 of the messages we send
    hl7_outbound_attempts: int = 5
    hl7_outbound_backoff: float = 1.0  # seconds before the first retry, doubled each time
    hl7_ack_timeout: float = 10.0  # seconds to wait for a destination's ACK
    # request limits (resources)
    max_string_chars: int = 1024 * 1024  # per primitive value but base64Binary and xhtml
    max_resource_depth: int = 64  # JSON objects nested in one resource
