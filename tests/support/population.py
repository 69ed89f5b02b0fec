"""A large SQLite database of small resources, built fast, for tests that need volume.

The resources go through the storage engine in large transactions, each stored as the
service stores a new resource (stamped `meta`, the JSON bytes, the index values the search
indexer extracts), without HTTP or validation: over HTTP or `fhir-server load`, 100,000
resources take minutes, this about 20 s on a quiet 2-core machine (half of it the indexer;
indexing in worker processes gained little, pickling the index values back costs as much).
The population: `patients` Patients `p<n>`, each with one Observation `o<n>` about it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from fhir_server.interactions.common import now_instant, stamp
from fhir_server.search.extract import Indexer
from fhir_server.search.registry import build_registry
from fhir_server.storage.base import StoredResource
from fhir_server.storage.sqlite import SQLiteStorage

TRANSACTION = 10_000  # resources per transaction


def patient(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"p{n}",
        "gender": "female" if n % 2 else "male",
        "birthDate": f"{1940 + n % 60}-01-01",
    }


def observation(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
        "subject": {"reference": f"Patient/p{n}"},
        "valueString": "never smoker" if n % 3 else "former smoker",
    }


def resources(patients: int) -> Iterator[dict[str, Any]]:
    for n in range(patients):
        yield patient(n)
        yield observation(n)


async def _build(path: Path, patients: int) -> None:
    indexer = Indexer(build_registry())
    now = now_instant()
    storage = SQLiteStorage(path)
    await storage.open()
    try:
        population = resources(patients)
        while batch := [r for _, r in zip(range(TRANSACTION), population, strict=False)]:
            async with storage.transaction() as tx:
                for resource in batch:
                    type, id = resource["resourceType"], resource["id"]
                    body = stamp(resource, id, 1, now)
                    rec = StoredResource(type, id, 1, now, False, orjson.dumps(body), "PUT")
                    await tx.write(rec, indexer.extract(body), expected_version=0)
    finally:
        await storage.close()


def build(path: Path, patients: int) -> None:
    """`patients` Patients and as many Observations in the SQLite file `path`, stamped now."""
    asyncio.run(_build(path, patients))
