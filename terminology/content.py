"""The FHIR R4 core terminology content shipped with the server.

`data/r4_terminology.json.gz` is written by `scripts/generate_r4_terminology.py` from the
official package hl7.fhir.r4.core 4.0.1: every CodeSystem, ValueSet and ConceptMap, with the
narrative and other prose removed. It is parsed once per call; indexes are built lazily by
the registry.
"""

from __future__ import annotations

import gzip
from importlib import resources
from typing import Any

import orjson

KINDS = ("CodeSystem", "ValueSet", "ConceptMap")
_FILE = "r4_terminology.json.gz"


def load_core() -> dict[str, list[dict[str, Any]]]:
    """Resource type -> the core resources of that type (CodeSystem, ValueSet, ConceptMap)."""
    packed = resources.files("terminology").joinpath("data", _FILE).read_bytes()
    content = orjson.loads(gzip.decompress(packed))
    return {kind: list(content.get(kind, ())) for kind in KINDS}
