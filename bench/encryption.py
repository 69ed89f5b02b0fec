"""The encryption-at-rest figures of `make bench`: what sealing costs creates, reads and
searches of Patients (names, identifiers, telecom, address, birthDate: all encrypted by
default), with encryption off and on, through the FHIR service on a scratch SQLite file
(in process, so the figure is the storage path's own cost, not HTTP's). Off and on
alternate twice on fresh files; each row shows the best of each.
`python -m bench.encryption` prints these rows alone.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench.report import table
from fhir_server.context import SYSTEM
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.search.registry import build_registry
from fhir_server.storage.base import Storage
from fhir_server.storage.encryption import ElementPaths, MasterKeys, encrypted
from fhir_server.storage.sqlite import SQLiteStorage

COLUMNS = ("encryption at rest (SQLite, in process)", "off /s", "on /s", "on/off")
PATIENTS = 1000
ROUNDS = 2
SEARCHES = 300


@dataclass
class Row:
    label: str
    off: float
    on: float

    def cells(self) -> tuple[str, ...]:
        return (self.label, f"{self.off:,.0f}", f"{self.on:,.0f}", f"{self.on / self.off:.0%}")


def _patient(n: int) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": f"MRN-{n:07d}"}],
        "name": [{"family": f"Family{n % 997}", "given": [f"Given{n % 89}"]}],
        "telecom": [{"system": "phone", "value": f"555-{n:07d}"}],
        "address": [{"city": f"City{n % 50}", "postalCode": f"{n % 9999:05d}"}],
        "birthDate": f"19{n % 90 + 10:02d}-0{n % 9 + 1}-1{n % 9}",
        "gender": "female" if n % 2 else "male",
    }


async def _rate(count: int, step: Callable[[int], Awaitable[object]]) -> float:
    start = time.perf_counter()
    for n in range(count):
        await step(n)
    return count / (time.perf_counter() - start)


async def _measure(folder: Path, encrypt: bool) -> tuple[float, ...]:
    storage = SQLiteStorage(folder / ("on.db" if encrypt else "off.db"))
    await storage.open()
    registry = build_registry()
    try:
        store: Storage = storage
        if encrypt:
            master = MasterKeys.from_env(base64.b64encode(os.urandom(32)).decode())
            store = await encrypted(storage, master, ElementPaths.from_setting("default"), registry)
        svc = FhirService(store, registry=registry)

        async def create(n: int) -> object:
            body = {**_patient(n), "id": f"p{n}"}
            return await svc.handle(Request("PUT", f"Patient/p{n}", body=body, context=SYSTEM))

        async def observe(n: int) -> object:
            body = {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/p{n}"},
                "valueQuantity": {"value": 60 + n % 40, "unit": "/min"},
                "note": [{"text": f"resting, patient {n} reports no symptoms"}],
            }
            return await svc.handle(Request("POST", "Observation", body=body, context=SYSTEM))

        async def read(n: int) -> object:
            return await svc.handle(Request("GET", f"Patient/p{n}", context=SYSTEM))

        async def search(n: int) -> object:
            query = (("name", f"family{n % 997}"), ("identifier", f"MRN-{n:07d}"))
            return await svc.handle(Request("GET", "Patient", query=query, context=SYSTEM))

        return (
            await _rate(PATIENTS, create),
            await _rate(PATIENTS, observe),
            await _rate(PATIENTS, read),
            await _rate(SEARCHES, search),
        )
    finally:
        await storage.close()


def measure(scratch: Path) -> list[Row]:
    best: dict[bool, tuple[float, ...]] = {}
    for _ in range(ROUNDS):  # off and on alternate, the best of each: a busy machine's
        for encrypt in (False, True):  # load then hits both alike
            folder = Path(tempfile.mkdtemp(dir=scratch, prefix="encryption-"))
            rates = asyncio.run(_measure(folder, encrypt))
            best[encrypt] = tuple(map(max, zip(best.get(encrypt, rates), rates, strict=True)))
    off, on = best[False], best[True]
    labels = (
        f"create (PUT) Patient, {PATIENTS:,}",
        f"create (POST) Observation with a note, {PATIENTS:,}",
        f"read Patient by id, {PATIENTS:,}",
        "search name prefix + identifier",
    )
    return [Row(label, a, b) for label, a, b in zip(labels, off, on, strict=True)]


def render(rows: list[Row]) -> str:
    return table(COLUMNS, [r.cells() for r in rows])


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        print(render(measure(Path(scratch))))
    sys.exit(0)
