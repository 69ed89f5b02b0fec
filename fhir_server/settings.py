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
