"""Storage engines behind one port (`base.Storage`); `open_storage` picks one from settings."""

from __future__ import annotations

from fhir_server.settings import Settings
from fhir_server.storage.base import Storage


def make_storage(settings: Settings) -> Storage:
    """The engine the settings name (not yet opened)."""
    if settings.storage == "mongodb":
        from fhir_server.storage.mongodb import MongoStorage

        return MongoStorage.from_url(settings.database)
    from fhir_server.storage.sqlite import SQLiteStorage

    return SQLiteStorage(settings.database)
