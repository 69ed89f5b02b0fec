"""The search figures of `make bench`, on a generated SQLite database of a million resources.

The database is built in process through the storage engine (the same index extraction
as every write, without HTTP: loading a million resources over HTTP would take the
better part of an hour), then served by `fhir-server serve` and searched over real HTTP,
one request at a time, each figure over many different values after a warm-up.

The data: patient groups as in `dataset.py` (Patient, Encounters, Observations,
Conditions), every Patient with a general practitioner (one of `PRACTITIONERS`), plus one
patient with `EVERYTHING_SIZE` resources for `$everything`. Ids are the generated UUIDs.
The built file is kept in `bench/cache/` under a name that changes with the size, seed,
and the search and storage code, so a later run reuses it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import multiprocessing
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from tqdm import tqdm

from bench import dataset, server
from bench.report import cpu_cell, ms, table
from bench.terminology import Latency, Row

CACHE = Path(__file__).parent / "cache"
CHUNK = 5_000
PRACTITIONERS = 500
EVERYTHING_SIZE = 500
SAMPLES = 200
STAMP = "2025-07-01T00:00:00.000000Z"

SINGLE_TARGET_MS = 20.0
CHAIN_TARGET_MS = 100.0
COUNT_TARGET_MS = 100.0
EVERYTHING_TARGET_MS = 200.0
COLUMNS = ("search", "p50", "p95", "server CPU/req", "target", "met?")
# Server CPU per request (user + system, µs) by probe label prefix: holds across machines.
CPU_TARGETS_US = {"token:": 1_000.0}


# -- building the database -----------------------------------------------------------------


def practitioner(index: int) -> dict[str, Any]:
    rng = random.Random(f"practitioner-{index}")
    return {
        "resourceType": "Practitioner",
        "id": f"gp-{index}",
        "identifier": [
            {"system": "http://hl7.org/fhir/sid/us-npi", "value": f"{1000000000 + index}"}
        ],
        "name": [
            {
                "family": f"{rng.choice(dataset.FAMILY)}{index}",
                "given": [rng.choice(dataset.GIVEN["female"])],
            }
        ],
    }


def _chunk_resources(seed: int, chunk: int, size: int) -> list[dict[str, Any]]:
    """About `size` resources of whole patient groups, with ids and resolved references."""
    rng = random.Random(f"{seed}-{chunk}")
    out: list[dict[str, Any]] = []
    index = chunk * 100_000
    while len(out) < size:
        group = dataset.patient_group(rng, index)
        index += 1
        urls = {
            url: f"{res['resourceType']}/{url.removeprefix('urn:uuid:')}"
            for url, res in group.entries
        }
        for url, resource in group.entries:
            resource["id"] = url.removeprefix("urn:uuid:")
            for key in ("subject", "encounter"):
                if key in resource:
                    resource[key]["reference"] = urls[resource[key]["reference"]]
            if resource["resourceType"] == "Patient":
                gp = rng.randrange(PRACTITIONERS)
                resource["generalPractitioner"] = [{"reference": f"Practitioner/gp-{gp}"}]
            out.append(resource)
    return out


def _big_patient() -> list[dict[str, Any]]:
    """One patient with EVERYTHING_SIZE resources (the $everything figure)."""
    rng = random.Random("everything")
    patient = dataset.patient(rng, 99_999_999) | {"id": "everything"}
    patient["generalPractitioner"] = [{"reference": "Practitioner/gp-0"}]
    out = [patient]
    start = dataset.EPOCH
    encounters = 0
    while len(out) < EVERYTHING_SIZE:
        encounter = dataset.encounter(rng, "Patient/everything", start) | {
            "id": f"everything-enc-{encounters}"
        }
        encounters += 1
        out.append(encounter)
        for _ in range(min(9, EVERYTHING_SIZE - len(out))):
            obs = dataset.observation(
                rng, "Patient/everything", f"Encounter/{encounter['id']}", start
            )
            out.append(obs | {"id": f"everything-obs-{len(out)}"})
    return out


def _prepare(resources: list[dict[str, Any]]) -> list[tuple[str, str, bytes, list[Any]]]:
    """Worker side: JSON bytes as served and the index values of each resource."""
    indexer = _worker_indexer()
    prepared = []
    for resource in resources:
        resource["meta"] = {"versionId": "1", "lastUpdated": STAMP}
        prepared.append(
            (
                resource["resourceType"],
                resource["id"],
                orjson.dumps(resource),
                indexer.extract(resource),
            )
        )
    return prepared


_INDEXER: Any = None


def _worker_indexer() -> Any:
    global _INDEXER
    if _INDEXER is None:
        from fhir_server.search.extract import Indexer
        from fhir_server.search.registry import build_registry

        _INDEXER = Indexer(build_registry())
    return _INDEXER


def _prepare_chunk(job: tuple[int, int, int]) -> list[tuple[str, str, bytes, list[Any]]]:
    seed, chunk, size = job
    return _prepare(_chunk_resources(seed, chunk, size))


async def _write(
    path: Path, batches: Iterator[list[tuple[str, str, bytes, list[Any]]]], bar: tqdm[Any]
) -> None:
    from fhir_server.storage.base import StoredResource
    from fhir_server.storage.sqlite import SQLiteStorage

    storage = SQLiteStorage(path)
    await storage.open()
    try:
        for batch in batches:
            async with storage.transaction() as tx:
                for type, id, data, index in batch:
                    rec = StoredResource(type, id, 1, STAMP, False, data, "PUT")
                    await tx.write(rec, index, expected_version=0)
            bar.update(len(batch))
    finally:
        await storage.close()


def code_fingerprint() -> str:
    """Changes when the code that decides what is indexed, and how, changes."""
    root = Path(__file__).parents[1] / "fhir_server"
    digest = hashlib.sha256()
    for folder in ("search", "storage/sqlite", "data"):
        for file in sorted((root / folder).rglob("*")):
            if file.suffix in (".py", ".json"):
                digest.update(file.read_bytes())
    digest.update(Path(__file__).read_bytes())
    digest.update((Path(__file__).parent / "dataset.py").read_bytes())
    return digest.hexdigest()[:12]


def database(size: int, seed: int) -> Path:
    """The cached database of `size` resources, built first if needed."""
    path = CACHE / f"search-{size}-{seed}-{code_fingerprint()}.db"
    if path.exists():
        return path
    CACHE.mkdir(exist_ok=True)
    for old in CACHE.glob(f"search-{size}-{seed}-*"):
        old.unlink()
    partial = path.with_suffix(".partial")
    for leftover in CACHE.glob(partial.name + "*"):  # an interrupted build
        leftover.unlink()
    fixed = [practitioner(i) for i in range(PRACTITIONERS)] + _big_patient()
    rest = size - len(fixed)
    jobs = [
        (seed, chunk, min(CHUNK, rest - chunk * CHUNK))
        for chunk in range((rest + CHUNK - 1) // CHUNK)
    ]
    with (
        tqdm(total=size, desc="building the search database", unit="res", unit_scale=True) as bar,
        multiprocessing.get_context("spawn").Pool(2) as pool,
    ):
        chunks = pool.imap(_prepare_chunk, jobs)
        asyncio.run(_write(partial, itertools.chain([_prepare(fixed)], chunks), bar))
    partial.rename(path)  # closed cleanly: SQLite has folded its WAL into the file
    return path


# -- measuring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    label: str
    target_ms: float
    path: Callable[[int], str]  # the i-th request's path and query under the FHIR base
    samples: int = SAMPLES


def probes(client: httpx.Client, size: int) -> list[Probe]:
    """The figures, each with values drawn from the data itself."""
    patients = _ids(client, "Patient", 200)
    observation = client.get("/Observation", params={"_count": 1}).json()["entry"][0]["resource"]
    codes = [c for _, c, *_ in dataset.LABS + dataset.VITALS]
    families = sorted(dataset.FAMILY)
    encounters = _ids(client, "Encounter", 200)
    day = observation["effectiveDateTime"][:10]
    chunks = max(1, size // CHUNK - 1)

    def mrn(i: int) -> str:  # a patient of chunk i (each chunk has a few hundred)
        return f"{dataset.MRN_SYSTEM}|{dataset.mrn((i % chunks) * 100_000 + (i * 7) % 300)}"

    def query(type: str, **params: str) -> str:
        return f"/{type}?{urlencode(params)}" if type else f"?{urlencode(params)}"

    return [
        Probe(
            "token: Observation?code=loinc|x",
            SINGLE_TARGET_MS,
            lambda i: query("Observation", code=f"{dataset.LOINC}|{codes[i % len(codes)]}"),
        ),
        Probe(
            "reference: Observation?subject=Patient/x",
            SINGLE_TARGET_MS,
            lambda i: query("Observation", subject=f"Patient/{patients[i % len(patients)]}"),
        ),
        Probe(
            "date: Observation?date=day",
            SINGLE_TARGET_MS,
            lambda i: query("Observation", date=_shift(day, i)),
        ),
        Probe(
            "string: Patient?name=prefix",
            SINGLE_TARGET_MS,
            lambda i: query("Patient", name=families[i % len(families)][:3]),
        ),
        Probe(
            "chain: Observation?subject:Patient.general-practitioner.name=x",
            CHAIN_TARGET_MS,
            lambda i: query(
                "Observation",
                **{
                    "subject:Patient.general-practitioner.name": practitioner(i % 50)["name"][0][
                        "family"
                    ]
                },
            ),
        ),
        Probe(
            "chain: Observation?encounter.subject.identifier=mrn",
            CHAIN_TARGET_MS,
            lambda i: query("Observation", **{"encounter.subject.identifier": mrn(i)}),
        ),
        Probe(
            "_has: Patient?_has:Encounter:subject:_id=x",
            CHAIN_TARGET_MS,
            lambda i: query(
                "Patient", **{"_has:Encounter:subject:_id": encounters[i % len(encounters)]}
            ),
        ),
        Probe(
            "_summary=count over every resource",
            COUNT_TARGET_MS,
            lambda i: query("", _summary="count"),
            samples=50,
        ),
        Probe(
            "_summary=count: Observation?code=loinc|x",
            COUNT_TARGET_MS,
            lambda i: query(
                "Observation", _summary="count", code=f"{dataset.LOINC}|{codes[i % len(codes)]}"
            ),
            samples=50,
        ),
        Probe(
            f"Patient/$everything, {EVERYTHING_SIZE} resources (_count=1000)",
            EVERYTHING_TARGET_MS,
            lambda i: "/Patient/everything/$everything?_count=1000",
            samples=30,
        ),
    ]


def _shift(day: str, i: int) -> str:
    return time.strftime(
        "%Y-%m-%d", time.gmtime(time.mktime(time.strptime(day, "%Y-%m-%d")) - 86400 * (i % 300))
    )


def _ids(client: httpx.Client, type: str, count: int) -> list[str]:
    found = client.get(f"/{type}", params={"_count": count}).json()
    return [e["resource"]["id"] for e in found.get("entry", [])]


def latency(
    client: httpx.Client, probe: Probe, cpu: Callable[[], float] | None = None
) -> tuple[Latency, float | None]:
    """p50 and p95 of the probe's requests, and the server CPU per request in µs (from
    `cpu`, the server's CPU seconds so far)."""
    for i in range(10):  # warm-up
        _ok(client.get(probe.path(i + 1000)))
    timings = []
    used = cpu() if cpu else 0.0
    for i in range(probe.samples):
        start = time.perf_counter()
        _ok(client.get(probe.path(i)))
        timings.append((time.perf_counter() - start) * 1000)
    per_request = (cpu() - used) / probe.samples * 1e6 if cpu else None
    timings.sort()
    found = Latency(
        timings[len(timings) // 2], timings[min(len(timings) - 1, len(timings) * 95 // 100)]
    )
    return found, per_request


def _ok(response: httpx.Response) -> None:
    if response.status_code != 200:
        try:
            why = response.json()["issue"][0]["diagnostics"]
        except (ValueError, KeyError, IndexError):
            why = response.text
        raise RuntimeError(f"{response.status_code} {why}"[:100])


def measure(scratch: Path, size: int, seed: int) -> list[Row]:
    path = database(size, seed)
    rows = []
    with (
        server.fhir_server(path, scratch / "search.log") as fhir,
        httpx.Client(
            base_url=fhir.fhir_base, timeout=120, headers={"Prefer": "handling=strict"}
        ) as client,
    ):
        server.wait_until_idle(fhir)  # start-up work (the CDS unit tables) is not a search's
        for probe in probes(client, size):
            try:
                found, cpu_us = latency(client, probe, fhir.cpu)
            except RuntimeError as error:
                rows.append(
                    Row(
                        probe.label,
                        "—",
                        f"failed: {error}",
                        f"p95 ≤ {probe.target_ms:g} ms",
                        False,
                        float("nan"),
                    )
                )
                continue
            cpu_target = next(
                (t for prefix, t in CPU_TARGETS_US.items() if probe.label.startswith(prefix)), None
            )
            rows.append(
                Row(
                    probe.label,
                    ms(found.p50),
                    ms(found.p95),
                    f"p95 ≤ {probe.target_ms:g} ms",
                    found.p95 <= probe.target_ms
                    and (cpu_target is None or cpu_us is None or cpu_us <= cpu_target),
                    found.p95,
                    cpu_cell(cpu_us, cpu_target),
                )
            )
    return rows


def render(rows: list[Row], size: int) -> str:
    heading = f"search over {size:,} resources (SQLite, one request at a time)"
    body = [(*row.cells()[:3], row.cpu, *row.cells()[3:]) for row in rows]
    return heading + "\n" + table(COLUMNS, body)
