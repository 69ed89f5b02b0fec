"""The v2 table maps of the HL7 v2-to-FHIR IG, as `scripts/generate_hl7v2_maps.py` derived them.

`codes(name)` is one concept map (e.g. "AdministrativeSex", from
`HL7 Concept Map_ AdministrativeSex - Sheet1.csv`): v2 code -> (code, display, system).
`STRUCTURES` maps "TYPE^EVENT" to its message structure (v2 table 0354).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_DATA = json.loads((Path(__file__).parent / "data" / "maps.json").read_text(encoding="utf-8"))
STRUCTURES: dict[str, str] = _DATA["structures"]
_CODES: dict[str, dict[str, list[str]]] = _DATA["codes"]


def lookup(name: str, code: str) -> tuple[str, str, str] | None:
    """(code, display, system) the map `name` gives v2 `code`, None when it has none."""
    found = _CODES[name].get(code)
    return (found[0], found[1], found[2]) if found else None


def coding(name: str, code: str) -> dict[str, Any] | None:
    """The FHIR Coding the map `name` gives v2 `code`."""
    found = lookup(name, code)
    if found is None:
        return None
    out = {"system": found[2], "code": found[0]}
    if found[1]:
        out["display"] = found[1]
    return out
