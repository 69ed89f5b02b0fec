"""Expand, once, every value set an R4 element is bound to with strength required.

Usage: python scripts/generate_r4_required_codes.py

Reads the R4 core terminology the server ships (`terminology/data/r4_terminology.json.gz`,
derived from `hl7.fhir.r4.core` 4.0.1 by `generate_r4_terminology.py`) and the bindings
(`terminology/data/r4_bindings.json`), and writes `terminology/data/r4_required_codes.json`
with sorted keys and no whitespace:

- `expansions`: value set canonical -> its codes as `[system, code]` pairs, for every value
  set of a required binding that the core content expands;
- `unchecked`: the core value sets of required bindings the core content cannot expand
  (all of MIME types, currencies, UCUM).

The write-time binding check (`terminology/bindings.py`) takes these as the authority, so a
CodeSystem or ValueSet stored under a core canonical cannot change what a write may hold.
Each expansion is checked against the terminology engine's own membership answer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from terminology.bindings import bindings  # noqa: E402
from terminology.registry import Terminology  # noqa: E402

OUT = ROOT / "terminology" / "data" / "r4_required_codes.json"
_PROBE = "not-a-code-of-any-value-set"


def main() -> None:
    core = Terminology()
    urls = sorted({b.value_set for b in bindings().values() if b.strength == "required"})
    expansions: dict[str, list[list[str]]] = {}
    unchecked: list[str] = []
    for url in urls:
        if core.value_set(url) is None:
            continue  # not a core definition: the server's own content decides
        if core.contains(url, None, _PROBE) is None:
            unchecked.append(url)
            continue
        pairs = sorted({(item.system, item.code) for item in core.items(url)})
        for system, code in pairs:
            assert core.contains(url, system, code), (url, system, code)
        expansions[url] = [list(pair) for pair in pairs]
    data = {"expansions": expansions, "unchecked": unchecked}
    OUT.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")), encoding="utf-8")
    print(f"{OUT.name}: {len(expansions)} value sets expanded, {len(unchecked)} unchecked")


if __name__ == "__main__":
    main()
