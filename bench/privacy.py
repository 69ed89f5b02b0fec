"""The privacy figures of `make bench`: what consents cost a search, and how fast
de-identification runs.

In process on a SQLite file: `patients` Patients with one Observation each, half of them
with a privacy Consent that opts out of research (HRESCH). A search of Observations
(`_count=50`) as a clinician (no consent applies; the label rule does) and as a research
client (every opted-out patient's data withheld through the query) is timed, median of
the runs after a warm-up; the consent search should cost at most twice the plain one
(both include the second, one-row query that decides the SUBSETTED tag).
De-identification (safe-harbor) of synthetic patient records (bench/records.py), in
resources per second (target: a 10,000-patient population, about 3.5 million such
resources, in under an hour). `python -m bench.privacy` prints these rows alone.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.records import record_bundles
from bench.report import table
from fhir_server.context import SYSTEM, AccessContext
from fhir_server.deidentify import Deidentifier
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.privacy import install
from fhir_server.storage.sqlite import SQLiteStorage

COLUMNS = ("privacy", "size", "p50", "target", "met?")
SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CLINICIAN = AccessContext(
    subject="c", scopes=frozenset({"user/*.rs"}), fhir_user="Practitioner/c", role="clinician"
)
RESEARCH = AccessContext(
    subject="r",
    scopes=frozenset({"user/*.rs"}),
    fhir_user="Practitioner/r",
    role="clinician",
    purposes=frozenset({"HRESCH"}),
)


@dataclass
class Row:
    label: str
    size: str
    value: float
    unit: str
    target: str
    met: bool

    def cells(self) -> tuple[str, ...]:
        return (
            self.label,
            self.size,
            f"{self.value:,.1f} {self.unit}",
            self.target,
            "yes" if self.met else "NO",
        )


def render(rows: list[Row]) -> str:
    return table(COLUMNS, [row.cells() for row in rows])


def measure(quick: bool = False) -> list[Row]:
    patients = 2_000 if quick else 10_000
    rows = asyncio.run(_consent_rows(patients, runs=5 if quick else 15))
    rows.append(_deidentify_row(2 if quick else 6))
    return rows


def _entries(i: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": f"p{i}"},
        {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/p{i}"},
        },
    ]
    if i % 2 == 0:
        deny = {
            "type": "deny",
            "purpose": [
                {"code": "HRESCH", "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason"}
            ],
        }
        out.append(
            {
                "resourceType": "Consent",
                "id": f"c{i}",
                "status": "active",
                "scope": {"coding": [{"system": SCOPE, "code": "patient-privacy"}]},
                "category": [{"text": "privacy"}],
                "patient": {"reference": f"Patient/p{i}"},
                "provision": {"type": "permit", "provision": [deny]},
            }
        )
    return [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in out
    ]


async def _consent_rows(patients: int, runs: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as scratch:
        storage = SQLiteStorage(str(Path(scratch) / "fhir.db"))
        await storage.open()
        try:
            svc = FhirService(storage)
            await install(svc)
            batch: list[dict[str, Any]] = []
            for i in range(patients):
                batch.extend(_entries(i))
                if len(batch) >= 3000 or i == patients - 1:
                    bundle = {"resourceType": "Bundle", "type": "batch", "entry": batch}
                    await svc.handle(Request("POST", "", body=bundle, context=SYSTEM))
                    batch = []
            plain = await _search(svc, CLINICIAN, runs)
            withheld = await _search(svc, RESEARCH, runs)
        finally:
            await storage.close()
    size = f"{patients:,} patients, {patients // 2:,} opted out"
    return [
        Row(
            "search Observation?_count=50, no consent applies", size, plain * 1000, "ms", "-", True
        ),
        Row(
            "same search, research caller (opt-outs withheld)",
            size,
            withheld * 1000,
            "ms",
            "<= 2x the above",
            withheld <= 2 * plain,
        ),
    ]


async def _search(svc: FhirService, ctx: AccessContext, runs: int) -> float:
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        await svc.handle(Request("GET", "Observation", (("_count", "50"),), context=ctx))
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def _deidentify_row(patients: int) -> Row:
    resources = [
        e["resource"] for bundle in record_bundles(patients, seed=3) for e in bundle["entry"]
    ]
    run = Deidentifier("safe-harbor", b"k" * 32)
    started = time.perf_counter()
    for resource in resources:
        run.transform(resource)
    rate = len(resources) / (time.perf_counter() - started)
    return Row(
        "de-identify (safe-harbor), synthetic records",
        f"{len(resources):,} resources",
        rate,
        "res/s",
        ">= 1,000 res/s",
        rate >= 1_000,
    )


if __name__ == "__main__":
    print(render(measure(quick="--quick" in sys.argv)))
