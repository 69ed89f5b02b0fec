"""Derive the elements of the R4 types the R4B models lack, from the hl7.fhir.r4.core package.

Usage: python scripts/generate_r4_structures.py [--package PATH_TO_TGZ]

The package is the one `generate_r4_data.py` reads. For each resource type validation takes
as structure-only (`STRUCTURE_ONLY_TYPES`: no R4B model, or remodelled in R4B) and each
datatype they use that R4B has no model for (SubstanceAmount), the script writes
`fhir_server/data/r4_structures.json` with sorted keys and no whitespace: structure path
(`MedicinalProduct`, `MedicinalProduct.name`, `SubstanceAmount`) -> its own elements in
order, each `[name, max, min, types]`:

- `name`: the element name, `value[x]` for a choice;
- `max`: "1" or "*"; `min`: 0 or more;
- `types`: FHIR type codes (`string`, `CodeableConcept`, `Resource`), or `#Path` for a
  backbone element or a contentReference (the structure at that path).

Inherited elements (id, meta, text, contained, extension, modifierExtension ...) are left
out: the server takes them from the R4B DomainResource and BackboneElement models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from generate_r4_data import package_resources, run

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir.resources.R4B import get_fhir_model_class  # noqa: E402

from fhir_server.model.validation.metadata import STRUCTURE_ONLY_TYPES  # noqa: E402

OUT = ROOT / "fhir_server" / "data" / "r4_structures.json"
INHERITED = frozenset(
    {
        "id",
        "meta",
        "implicitRules",
        "language",
        "text",
        "contained",
        "extension",
        "modifierExtension",
    }
)  # of a resource, from DomainResource
INHERITED_INSIDE = frozenset({"id", "extension", "modifierExtension"})  # from BackboneElement


def own_elements(sd: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """Structure path -> its own elements, from a StructureDefinition's snapshot."""
    out: dict[str, list[list[Any]]] = {sd["type"]: []}
    elements = sd["snapshot"]["element"]
    backbones = {
        e["path"]
        for e in elements
        if any(t["code"] in ("BackboneElement", "Element") for t in e.get("type", ()))
        and "." in e["path"]
    }
    for element in elements[1:]:
        path: str = element["path"]
        parent, name = path.rsplit(".", 1)
        if name in (INHERITED if parent == sd["type"] else INHERITED_INSIDE):
            continue
        if path in backbones:
            types = ["#" + path]
            out.setdefault(path, [])
        elif "contentReference" in element:
            types = [element["contentReference"]]
        else:
            types = [t["code"] for t in element["type"]]
        out.setdefault(parent, []).append([name, element["max"], element["min"], types])
    return out


def generate(tgz: bytes) -> None:
    sds = {
        sd["type"]: sd
        for sd in package_resources(tgz)
        if sd.get("resourceType") == "StructureDefinition"
        and sd.get("derivation") == "specialization"
    }
    wanted = sorted(STRUCTURE_ONLY_TYPES)
    out: dict[str, list[list[Any]]] = {}
    while wanted:
        name = wanted.pop()
        if name in out:
            continue
        structures = own_elements(sds[name])
        out.update(structures)
        for elements in structures.values():
            for _, _, _, types in elements:
                wanted += [
                    t
                    for t in types
                    if t[:1].isupper() and t not in out and t in sds and not _has_model(t)
                ]
    OUT.write_text(json.dumps(out, sort_keys=True, separators=(",", ":")), encoding="utf-8")
    print(f"{OUT.name}: {len(out)} structures")


def _has_model(type_name: str) -> bool:
    try:
        get_fhir_model_class(type_name)
    except (KeyError, ValueError, AttributeError):
        return False
    return True


def main() -> None:
    run(generate, __doc__ or "")


if __name__ == "__main__":
    main()
