"""The Bulk Data export figures of `make bench`: `$export` of the whole bench database.

Against `fhir-server serve` (authorization off, one process) on the database the main
bench loaded (100,000 resources by default): kick-off, poll until the manifest, then
download every file and parse every line. Reported: resources per second from kick-off to
manifest, the download rate, whether the counts per type equal the database's, and the
server's resident memory before the export and at its highest while it ran (sampled every
0.1 s): the export streams, so it must stay within 50 MB of the idle figure.

`python -m bench.bulk_export --resources N` loads its own scratch database first (Patients
with an Encounter, Observation and Condition each, through `fhir-server load`) and prints
the rows alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from bench import server
from bench.report import table

TYPES = ("Patient", "Encounter", "Observation", "Condition")
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
RSS_GROWTH_TARGET_MB = 50.0
COLUMNS = ("Bulk export", "resources", "rate", "server RSS", "target", "met?")


@dataclass
class Row:
    label: str
    resources: int
    rate: str
    rss: str
    target: str
    met: bool

    def cells(self) -> tuple[str, ...]:
        met = "yes" if self.met else "NO"
        return (self.label, f"{self.resources:,}", self.rate, self.rss, self.target, met)


def render(rows: list[Row]) -> str:
    return table(COLUMNS, [row.cells() for row in rows])


class PeakRss:
    """The server's resident memory, sampled on a thread while the block runs."""

    def __init__(self, running: server.RunningServer) -> None:
        self.running = running
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.running.memory().rss_mb)
            time.sleep(0.1)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(db_path: Path, scratch: Path) -> list[Row]:
    with server.fhir_server(db_path, scratch / "export-server.log") as running:
        base = running.fhir_base
        with httpx.Client(timeout=600) as client:
            counts = {
                t: client.get(f"{base}/{t}", params={"_summary": "count"}).json()["total"]
                for t in TYPES
            }
            time.sleep(1.0)  # settle after start-up
            idle = running.memory().rss_mb
            with PeakRss(running) as rss:
                start = time.perf_counter()
                manifest = _export(client, base)
                exported = time.perf_counter() - start
            start = time.perf_counter()
            lines, size = _download(client, manifest)
            downloaded = time.perf_counter() - start
    total = sum(lines.values())
    equal = lines == {t: n for t, n in counts.items() if n}
    growth = rss.peak - idle
    memory = f"{idle:,.0f} MB idle, peak {rss.peak:,.0f} MB (+{growth:,.0f})"
    target = f"counts equal, peak ≤ +{RSS_GROWTH_TARGET_MB:.0f} MB"
    met = equal and growth <= RSS_GROWTH_TARGET_MB
    return [
        Row("kick-off to manifest", total, f"{total / exported:,.0f} res/s", memory, target, met),
        Row(
            "download and parse every line",
            total,
            f"{size / 1024 / 1024 / downloaded:,.0f} MB/s",
            "counts per type equal" if equal else f"counts differ: {lines} vs {counts}",
            "",
            equal,
        ),
    ]


def _export(client: httpx.Client, base: str) -> dict[str, object]:
    kick = client.get(f"{base}/$export", params={"_type": ",".join(TYPES)}, headers=ASYNC)
    if kick.status_code != 202:
        raise RuntimeError(f"$export kick-off answered {kick.status_code}: {kick.text[:300]}")
    status = kick.headers["content-location"]
    while (reply := client.get(status)).status_code == 202:
        time.sleep(0.2)
    if reply.status_code != 200:
        raise RuntimeError(f"$export status answered {reply.status_code}: {reply.text[:300]}")
    manifest: dict[str, object] = reply.json()
    return manifest


def _download(client: httpx.Client, manifest: dict[str, object]) -> tuple[dict[str, int], int]:
    lines: dict[str, int] = {}
    size = 0
    for entry in manifest["output"]:  # type: ignore[attr-defined]
        with client.stream("GET", entry["url"]) as reply:
            for line in reply.iter_lines():
                if line:
                    resource = orjson.loads(line)
                    lines[resource["resourceType"]] = lines.get(resource["resourceType"], 0) + 1
                    size += len(line) + 1
    return lines, size


def population(resources: int, path: Path) -> None:
    """NDJSON of `resources` resources: a Patient, then an Encounter, an Observation and a
    Condition that refer to it, repeated (ids given, so `fhir-server load` takes them)."""
    with path.open("wb") as out:
        for n in range(resources):
            patient = f"Patient/bx{n // 4}"
            kind = TYPES[n % 4]
            body: dict[str, object] = {"resourceType": kind, "id": f"bx{n // 4}"}
            if kind == "Patient":
                body |= {"gender": "female" if n % 8 else "male", "birthDate": "1970-01-01"}
            elif kind == "Encounter":
                body |= {
                    "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": patient},
                }
            elif kind == "Observation":
                code = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
                body |= {
                    "status": "final",
                    "code": code,
                    "subject": {"reference": patient},
                    "valueQuantity": {"value": 60 + n % 40, "unit": "/min"},
                }
            else:
                code = {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}
                body |= {"code": code, "subject": {"reference": patient}}
            out.write(orjson.dumps(body) + b"\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk_export")
    parser.add_argument("--resources", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fhir-bench-export-") as folder:
        scratch = Path(folder)
        population(args.resources, scratch / "population.ndjson")
        env = {**os.environ, "FHIR_DATABASE": str(scratch / "bench.db")}
        command = [str(server.BIN_DIR / "fhir-server"), "load", str(scratch / "population.ndjson")]
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        print(render(measure(scratch / "bench.db", scratch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
