"""`python -m bench`: load a synthetic dataset into a real server, put it under load, and
print one table of throughput, latency, errors and memory against the targets.

Steps: generate the dataset; start `fhir-server serve` on a scratch SQLite file with
authorization off; load the dataset with transaction Bundles; read the server's memory; run
the read, create, update and mixed workloads with wrk; time reads while one large
transaction runs; stop it; run the four workloads again against the same file served by 2
worker processes; serve the same file with
authorization on and run the read workload with a bearer token; run it with the audit
trail off and on (bench/audit.py); run the read workload against a bare FastAPI app (the
ceiling); simulated devices post vital signs (see bench/monitoring.py); export with Bulk
Data `$export` (bench/bulk_export.py); time the orthotics geometry (in process, see
bench/orthotics.py); print the table and write
bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from urllib.parse import quote

import orjson
from tqdm import tqdm

from bench import (
    audit,
    bearer,
    binary,
    bulk_export,
    cds,
    cds_models,
    dataset,
    encryption,
    hl7,
    hl7_fidelity,
    monitoring,
    orthotics,
    privacy,
    records,
    report,
    search,
    server,
    stall,
    subscriptions,
    terminology,
)
from bench.ingest import PreparedBundle, ingest
from bench.pyclient import run_python
from bench.wrk import WORKLOADS, LoadResult, WrkOutputError, find_wrk, run_wrk, wrk_version

QUICK_RESOURCES = 5_000
QUICK_DURATION = 3
QUICK_SEARCH_SIZE = 20_000
STALL_ENTRIES = 10_000  # the transaction that reads must not wait for
QUICK_STALL_ENTRIES = 2_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--resources",
        type=int,
        default=100_000,
        help="resources to load through transaction Bundles (default 100000)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_RESOURCES} resources, {QUICK_DURATION} s per "
        "workload (unless given)",
    )
    parser.add_argument("--duration", type=int, help="seconds per workload (default 10)")
    parser.add_argument(
        "--connections",
        type=int,
        default=16,
        help="concurrent connections per workload (default 16)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="wrk threads (default 1: wrk is not the bottleneck, and the "
        "other core stays free for the server)",
    )
    parser.add_argument(
        "--bundle-size", type=int, default=100, help="entries per transaction Bundle (default 100)"
    )
    parser.add_argument(
        "--ingest-concurrency",
        type=int,
        default=2,
        help="transaction Bundles in flight while loading (default 2)",
    )
    parser.add_argument("--seed", type=int, default=42, help="dataset seed (default 42)")
    parser.add_argument(
        "--python-client",
        action="store_true",
        help="use the Python load generator even when wrk is available",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="do not install wrk with apt-get when it is missing",
    )
    parser.add_argument(
        "--no-terminology", action="store_true", help="skip the terminology figures"
    )
    parser.add_argument("--no-search", action="store_true", help="skip the search figures")
    parser.add_argument(
        "--no-two-workers",
        action="store_true",
        help="skip running the workloads again with 2 worker processes",
    )
    parser.add_argument("--no-hl7", action="store_true", help="skip the HL7 v2 (MLLP) figures")
    parser.add_argument("--no-cds", action="store_true", help="skip the CDS Hooks figures")
    parser.add_argument(
        "--no-subscriptions", action="store_true", help="skip the Subscriptions figures"
    )
    parser.add_argument(
        "--records",
        type=int,
        default=60,
        help="patients in the patient-records ingest figures (default 60, about 18,000 "
        "resources; 0 skips them)",
    )
    parser.add_argument(
        "--no-binary", action="store_true", help="skip the Binary (100 MB raw) figures"
    )
    parser.add_argument(
        "--no-monitoring",
        action="store_true",
        help="skip the remote-monitoring figures (1,000 devices posting for a minute)",
    )
    parser.add_argument(
        "--no-export", action="store_true", help="skip the Bulk Data $export figures"
    )
    parser.add_argument(
        "--no-orthotics", action="store_true", help="skip the orthotics geometry figures"
    )
    parser.add_argument(
        "--no-privacy", action="store_true", help="skip the consent and de-identification figures"
    )
    parser.add_argument(
        "--search-size",
        type=int,
        default=1_000_000,
        help="resources in the generated search database (default 1000000; "
        f"{QUICK_SEARCH_SIZE} with --quick)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=report.RESULTS_DIR / "latest.json",
        help="where to write the JSON results",
    )
    args = parser.parse_args(argv)
    if args.quick and args.resources == parser.get_default("resources"):
        args.resources = QUICK_RESOURCES
    if args.quick and args.search_size == parser.get_default("search_size"):
        args.search_size = QUICK_SEARCH_SIZE
    if args.duration is None:
        args.duration = QUICK_DURATION if args.quick else 10
    return args


@dataclass
class Dataset:
    bundles: list[PreparedBundle]
    patients: int

    @property
    def resources(self) -> int:
        return sum(bundle.resources for bundle in self.bundles)


def generate(args: argparse.Namespace) -> Dataset:
    """Serializes every Bundle before the clock starts, so generation is not measured."""
    bundles, patients = [], 0
    with tqdm(total=args.resources, desc="generating dataset", unit="res", unit_scale=True) as bar:
        for bundle in dataset.transaction_bundles(args.resources, args.seed, args.bundle_size):
            entries = bundle["entry"]
            patients += sum(entry["resource"]["resourceType"] == "Patient" for entry in entries)
            bundles.append(PreparedBundle(orjson.dumps(bundle), len(entries)))
            bar.update(len(entries))
    return Dataset(bundles, patients)


@dataclass
class LoadGenerator:
    """wrk when it can be had, else the Python client; `name` goes into the report."""

    wrk: str | None
    name: str
    args: argparse.Namespace

    def run(
        self, base_url: str, workload: str, data_dir: Path, label: str, duration: int | None = None
    ) -> LoadResult:
        seconds = duration or self.args.duration
        if self.wrk:
            return run_wrk(
                self.wrk,
                base_url,
                workload,
                data_dir,
                duration=seconds,
                connections=self.args.connections,
                threads=self.args.threads,
                label=label,
            )
        return run_python(
            base_url,
            workload,
            data_dir,
            duration=seconds,
            connections=self.args.connections,
            processes=2,
            label=label,
        )


def load_generator(args: argparse.Namespace) -> LoadGenerator:
    wrk = None if args.python_client else find_wrk(install=not args.no_install)
    if wrk:
        return LoadGenerator(wrk, f"{wrk_version(wrk)} ({args.threads} thread)", args)
    print(
        "wrk is not available: falling back to the Python load generator, which shares "
        "the CPU with the server and may be the bottleneck",
        file=sys.stderr,
    )
    return LoadGenerator(None, "Python fallback client (NOT wrk; may be the bottleneck)", args)


def write_workload_data(data_dir: Path, patient_ids: list[str], patients: int) -> None:
    """The files bench/lua/common.lua and bench/pyclient.py read."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "ids.txt").write_text("\n".join(patient_ids) + "\n")
    tokens = (quote(f"{dataset.MRN_SYSTEM}|{dataset.mrn(i)}", safe="") for i in range(patients))
    (data_dir / "identifiers.txt").write_text("\n".join(tokens) + "\n")
    (data_dir / "patient.json").write_bytes(orjson.dumps(dataset.patient_template()))


def read_patient(fhir_base: str, patient_id: str) -> bytes:
    request = urllib.request.Request(
        f"{fhir_base}/Patient/{patient_id}", headers={"Accept": "application/fhir+json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def measure_server(
    args: argparse.Namespace, data: Dataset, loader: LoadGenerator, scratch: Path
) -> report.BenchRun:
    """Everything measured against `fhir-server serve`, which is stopped afterwards."""
    with server.fhir_server(scratch / "bench.db", scratch / "server.log") as fhir:
        print(f"server up at {fhir.fhir_base} (pid {fhir.process.pid})", file=sys.stderr)
        loaded = ingest(fhir.fhir_base, data.bundles, args.ingest_concurrency)
        run = report.BenchRun(
            resources=data.resources,
            patients=data.patients,
            bundles=len(data.bundles),
            seed=args.seed,
            duration=args.duration,
            connections=args.connections,
            load_generator=loader.name,
            ingest=loaded,
            memory_after_load=fhir.memory(),
        )
        if loaded.first_failure:
            print(
                f"transaction ingest: first failed bundle: {loaded.first_failure}", file=sys.stderr
            )
        if not loaded.patient_ids:
            raise SystemExit(
                "no Patient ids came back from the transactions (no "
                "response.location); cannot run the read/update workloads"
            )
        write_workload_data(scratch / "data", loaded.patient_ids, data.patients)
        (scratch / "patient.json").write_bytes(read_patient(fhir.fhir_base, loaded.patient_ids[0]))
        loader.run(fhir.base_url, "read", scratch / "data", "warm-up", duration=1)
        for workload in WORKLOADS:
            label = report.LABELS[workload]
            run.loads[workload] = with_cpu(
                fhir, partial(loader.run, fhir.base_url, workload, scratch / "data", label)
            )
        entries = QUICK_STALL_ENTRIES if args.quick else STALL_ENTRIES
        run.stall = stall.measure(fhir.fhir_base, loaded.patient_ids[0], entries, args.seed + 1)
        run.memory_at_end = fhir.memory()
    return run


def measure_workers(loader: LoadGenerator, scratch: Path, workers: int) -> dict[str, LoadResult]:
    """The workloads again against the same database, served by `workers` processes."""
    log = scratch / f"workers-{workers}.log"
    with server.fhir_server(scratch / "bench.db", log, workers=workers) as fhir:
        print(f"server with {workers} workers up at {fhir.fhir_base}", file=sys.stderr)
        server.wait_until_idle(fhir)  # every worker started, not only the first
        loader.run(fhir.base_url, "read", scratch / "data", "warm-up", duration=2)
        return {
            workload: with_cpu(
                fhir,
                partial(
                    loader.run,
                    fhir.base_url,
                    workload,
                    scratch / "data",
                    f"{report.LABELS[workload]}, {workers} workers",
                ),
            )
            for workload in WORKLOADS
        }


def measure_bearer(loader: LoadGenerator, scratch: Path) -> LoadResult | str:
    """Reads by id with a bearer token against the same database, authorization on (the
    reads without it ran on the server `measure_server` stopped); a string says why not."""
    with server.fhir_server(scratch / "bench.db", scratch / "bearer.log", auth=True) as fhir:
        env = {
            **os.environ,
            "FHIR_DATABASE": str(scratch / "bench.db"),
            **server.auth_env(True, fhir.port),
        }
        try:
            token = bearer.bearer_token(env, scratch)
        except bearer.TokenUnavailable as why:
            return str(why)
        data = bearer.write_token(scratch / "data", token)
        loader.run(fhir.base_url, "read", data, "warm-up", duration=1)
        return with_cpu(
            fhir, lambda: loader.run(fhir.base_url, "read", data, "read by id, bearer token")
        )


def with_cpu(running: server.RunningServer, load: Callable[[], LoadResult]) -> LoadResult:
    """`load()`'s result with the server CPU it cost (all of the server's processes)."""
    before = running.cpu()
    result = load()
    result.server_cpu_s = running.cpu() - before
    return result


def measure_ceiling(loader: LoadGenerator, scratch: Path) -> LoadResult:
    """Reads against the bare app serving the Patient bytes our server returned."""
    with server.bare_server(scratch / "patient.json", scratch / "bare.log") as bare:
        loader.run(bare.base_url, "read", scratch / "data", "warm-up", duration=1)
        return with_cpu(
            bare, lambda: loader.run(bare.base_url, "read", scratch / "data", "bare ceiling")
        )


def save(
    run: report.BenchRun,
    output: Path,
    terms: list[terminology.Row],
    searches: list[terminology.Row],
    search_size: int,
    hl7_rows: list[hl7.Row] | None = None,
    cds_rows: list[terminology.Row] | None = None,
    model_rows: list[cds_models.Row] | None = None,
    ortho_rows: list[orthotics.Row] | None = None,
    audit_rows: list[terminology.Row] | None = None,
) -> None:
    data = report.to_json(run)
    data["audit"] = [
        {"figure": r.label, "value": r.value, "target": r.target, "met": r.met}
        for r in audit_rows or []
    ]
    data["terminology"] = [
        {"figure": r.label, "value": r.value, "target": r.target, "met": r.met} for r in terms
    ]
    data["search"] = {
        "resources": search_size,
        "figures": [
            {
                "figure": r.label,
                "p95_ms": None if math.isnan(r.value) else r.value,
                "server_cpu_per_request": r.cpu,
                "target": r.target,
                "met": r.met,
            }
            for r in searches
        ],
    }
    data["hl7"] = [
        {
            "figure": r.label,
            "value": r.value,
            "cpu_ms_per_message": r.cpu_ms,
            "target": r.target,
            "met": r.met,
        }
        for r in hl7_rows or []
    ]
    data["cds_hooks"] = [
        {"figure": r.label, "p95_ms": r.value, "target": r.target, "met": r.met}
        for r in cds_rows or []
    ]
    data["cds_models"] = [
        {
            "figure": r.label,
            "p50_ms": r.p50_ms,
            "p99_ms": r.p99_ms,
            "cpu_p99_ms": r.cpu_p99_ms,
            "target_p99_ms": r.target_ms,
            "met": r.met,
        }
        for r in model_rows or []
    ]
    data["orthotics"] = [
        {"figure": r.label, "input": r.input, "wall_s": r.wall_s, "cpu_s": r.cpu_s,
         "target_s": r.target_s, "met": r.met}
        for r in ortho_rows or []
    ]  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)  # so the servers are stopped on `kill` too
    loader = load_generator(args)
    data = generate(args)
    try:
        with tempfile.TemporaryDirectory(prefix="fhir-bench-") as scratch:
            run = measure_server(args, data, loader, Path(scratch))
            if not args.no_two_workers:
                run.two_workers = measure_workers(loader, Path(scratch), 2)
            run.bearer = measure_bearer(loader, Path(scratch))
            run.ceiling = measure_ceiling(loader, Path(scratch))
            # one index interval of the audit trail (its default), unless a smoke run
            audit_seconds = args.duration if args.quick else max(args.duration, audit.RUN_SECONDS)
            audit_rows = audit.measure(
                lambda base, workload, data, label: loader.run(
                    base, workload, data, label, duration=1 if label == "warm-up" else audit_seconds
                ),
                Path(scratch),
            )
            terms = [] if args.no_terminology else terminology.measure(Path(scratch))
            searches = (
                [] if args.no_search else search.measure(Path(scratch), args.search_size, args.seed)
            )
            hl7_rows = (
                [] if args.no_hl7 else hl7.measure(Path(scratch), 600 if args.quick else 3000)
            )
            patients = min(args.records, 10) if args.quick else args.records
            record_rows, record_count = (
                records.measure(Path(scratch), patients, args.seed) if patients else ([], 0)
            )
            cds_rows = [] if args.no_cds else cds.measure(Path(scratch))
            model_rows = [] if args.no_cds else cds_models.measure()
            binary_rows = [] if args.no_binary else binary.measure(Path(scratch))
            monitoring_rows = (
                [] if args.no_monitoring else monitoring.measure(Path(scratch), quick=args.quick)
            )
            export_rows = (
                []
                if args.no_export
                else bulk_export.measure(Path(scratch) / "bench.db", Path(scratch))
            )
            crypt_rows = encryption.measure(Path(scratch))
            subscription_rows = (
                []
                if args.no_subscriptions
                else subscriptions.measure(Path(scratch), quick=args.quick)
            )
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    except server.ServerStartError as error:
        print(f"could not start a server: {error}", file=sys.stderr)
        return 1
    except WrkOutputError as error:
        print(f"the load generator failed: {error}", file=sys.stderr)
        return 1
    except RuntimeError as error:  # a terminology request that did not answer 200
        print(f"a terminology measurement failed: {error}", file=sys.stderr)
        return 1
    print(report.render(run))
    if audit_rows:
        print("\n" + audit.render(audit_rows))
    if terms:
        print("\n" + terminology.render(terms))
    if searches:
        print("\n" + search.render(searches, args.search_size))
    if hl7_rows:
        print("\n" + hl7.render(hl7_rows))
    if not args.no_hl7:
        print("\n" + hl7_fidelity.render(hl7_fidelity.measure()))
    if record_rows:
        print("\n" + records.render(record_rows, patients, record_count))
    if cds_rows:
        print("\n" + cds.render(cds_rows))
    if model_rows:
        print("\n" + cds_models.render(model_rows))
    if binary_rows:
        print("\n" + binary.render(binary_rows))
    if monitoring_rows:
        print("\n" + monitoring.render(monitoring_rows))
    if export_rows:
        print("\n" + bulk_export.render(export_rows))
    print("\n" + encryption.render(crypt_rows))
    if subscription_rows:
        print("\n" + subscriptions.render(subscription_rows))
    ortho_rows = [] if args.no_orthotics else orthotics.measure(quick=args.quick)
    if ortho_rows:
        print("\n" + orthotics.render(ortho_rows))
    privacy_rows = [] if args.no_privacy else privacy.measure(quick=args.quick)
    if privacy_rows:
        print("\n" + privacy.render(privacy_rows))
    save(
        run,
        args.output,
        terms,
        searches,
        args.search_size,
        hl7_rows,
        cds_rows,
        model_rows,
        ortho_rows,
        audit_rows,
    )
    print(f"\nresults written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
