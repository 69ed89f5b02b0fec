"""De-identifying NDJSON files: every `*.ndjson` of a folder, line by line (one resource
in memory at a time), into another folder, with `report.json` beside them."""

from __future__ import annotations

from pathlib import Path

import orjson

from fhir_server.deidentify.rules import Deidentifier

REPORT = "report.json"


def deidentify_dir(source: Path, target: Path, run: Deidentifier) -> dict[str, object]:
    """Write each NDJSON file of `source` de-identified to `target` (same names; a line
    that is not a JSON object raises ValueError naming the file and line); returns the
    report, also written to `target/report.json`."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.ndjson")):
        with path.open("rb") as lines, (target / path.name).open("wb") as out:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    resource = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise ValueError(f"{path.name} line {number} is not JSON") from None
                if not isinstance(resource, dict):
                    raise ValueError(f"{path.name} line {number} is not a JSON object")
                result = run.transform(resource)
                if result is not None:
                    out.write(orjson.dumps(result) + b"\n")
    report: dict[str, object] = {"profile": run.profile, **run.report.as_json()}
    (target / REPORT).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report
