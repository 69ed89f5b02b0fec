"""The HL7 v2 fidelity figure of `make bench`: FHIR-Converter's sample messages, converted.

For each sample message that has an expected bundle (FHIR-Converter's functional tests,
MIT, kept beside the repository in `../shared/fhir-converter-hl7v2/`, or where
FHIR_BENCH_HL7_CORPUS points), `convert` runs on it and the resource types of the expected
bundle are looked up in ours: the figure is the share of expected types present, over all
files (a message we refuse contributes none). FHIR-Converter writes one resource per
mention, so counts are not compared, only which types are there. A message counts as
accepted when its Bundle also commits through the FHIR service (validation included), on
a scratch SQLite file; the transport is not measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from adapters.hl7v2.convert import convert
from adapters.hl7v2.message import MessageError
from bench.report import table
from fhir_server.context import SYSTEM
from fhir_server.errors import FhirError
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.sqlite import SQLiteStorage

TARGET = 0.90
COLUMNS = ("HL7 v2 fidelity (FHIR-Converter samples)", "messages", "accepted", "types present")
DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "fhir-converter-hl7v2"


@dataclass
class Fidelity:
    messages: int = 0
    accepted: int = 0
    expected: int = 0
    present: int = 0
    missing: Counter[str] = field(default_factory=Counter)  # expected type -> files lacking it
    refused: list[str] = field(default_factory=list)  # "file: reason"
    cpu_ms: float = 0.0

    @property
    def share(self) -> float:
        return self.present / self.expected if self.expected else 0.0


def corpus() -> Path | None:
    found = Path(os.environ.get("FHIR_BENCH_HL7_CORPUS") or DEFAULT_CORPUS)
    return found if (found / "messages").is_dir() else None


def measure(folder: Path | None = None) -> Fidelity | None:
    """The fidelity over `folder` (default: the corpus), None when there is no corpus."""
    folder = folder or corpus()
    if folder is None:
        return None
    with tempfile.TemporaryDirectory(prefix="fhir-bench-hl7-fidelity-") as scratch:
        return asyncio.run(_measure(folder, Path(scratch) / "fidelity.db"))


async def _measure(folder: Path, database: Path) -> Fidelity:
    storage = SQLiteStorage(database)
    await storage.open()
    try:
        return await _over(folder, FhirService(storage))
    finally:
        await storage.close()


async def _over(folder: Path, service: FhirService) -> Fidelity:
    expected_files = {p.name.removesuffix("-expected.json"): p for p in folder.glob("expected/*/*")}
    out = Fidelity()
    started = time.process_time()
    for message in sorted((folder / "messages").glob("*.hl7")):
        expected = expected_files.get(message.stem)
        if expected is None:
            continue
        wanted = {e["resource"]["resourceType"] for e in json.loads(expected.read_text())["entry"]}
        out.messages += 1
        out.expected += len(wanted)
        try:
            bundle = convert(message.read_bytes()).bundle
            await service.handle(Request("POST", "", body=bundle, context=SYSTEM))
        except MessageError as error:
            out.refused.append(f"{message.name}: {error.error_code} {error.location} {error.text}")
            out.missing.update(wanted)
            continue
        except FhirError as error:
            out.refused.append(f"{message.name}: not committed: {error.diagnostics}")
            out.missing.update(wanted)
            continue
        out.accepted += 1
        ours = {e["resource"]["resourceType"] for e in bundle["entry"]}
        out.present += len(wanted & ours)
        out.missing.update(wanted - ours)
    out.cpu_ms = (time.process_time() - started) * 1000 / max(1, out.messages)
    return out


def render(found: Fidelity | None) -> str:
    if found is None:
        return table(COLUMNS, [("not measured: no sample corpus", "", "", "")])
    met = "met" if found.share >= TARGET else "NOT met"
    row = (
        f"all listed families ({found.cpu_ms:.1f} ms CPU/message, commit included)",
        str(found.messages),
        str(found.accepted),
        f"{found.share:.1%} (target ≥ {TARGET:.0%}: {met})",
    )
    return table(COLUMNS, [row])


if __name__ == "__main__":
    result = measure()
    print(render(result))
    if result is not None:
        print("missing most:", ", ".join(f"{t} {n}" for t, n in result.missing.most_common(15)))
        for line in result.refused:
            print("refused", line)
