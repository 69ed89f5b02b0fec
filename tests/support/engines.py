"""Storage engine factories for the contract suite: name -> `async factory(tmp_path)`.

Each factory returns an opened `Storage` on fresh, empty data; the caller closes it. A
factory may call `pytest.skip(reason)` when its engine is not available here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fhir_server.storage.base import Storage
from fhir_server.storage.sqlite import SQLiteStorage

EngineFactory = Callable[[Path], Awaitable[Storage]]


async def make_sqlite(tmp_path: Path) -> Storage:
    """A SQLite engine on a new file under `tmp_path`."""
    storage = SQLiteStorage(tmp_path / "contract.db")
    await storage.open()
    return storage


ENGINE_FACTORIES: dict[str, EngineFactory] = {"sqlite": make_sqlite}

try:
    from tests.support.mongo_engines import MONGO_FACTORIES
except ImportError:  # the MongoDB engine's factories are added by its own module
    MONGO_FACTORIES = {}
ENGINE_FACTORIES.update(MONGO_FACTORIES)
