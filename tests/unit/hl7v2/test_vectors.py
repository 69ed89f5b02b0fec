"""Each tests/vectors/hl7v2/<family>/<name>.hl7 converts to <name>.expected.json.

The expected Bundles follow the HL7 v2-to-FHIR IG maps each mapping function cites. The
urn:uuid fullUrls are compared by position (the n-th distinct urn:uuid of each side), so
only the links between entries matter, not the uuid values.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2.convert import convert

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "hl7v2"
CASES = sorted(VECTORS.glob("*/*.hl7"))
_URN = re.compile(r"urn:uuid:[0-9a-f-]{36}")


def normalised(value: Any) -> Any:
    seen: dict[str, str] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and _URN.fullmatch(node):
            return seen.setdefault(node, f"urn:uuid:#{len(seen) + 1}")
        return node

    return walk(value)


def test_vectors_exist() -> None:
    families = {case.parent.name for case in CASES}
    assert {
        "adt_a01",
        "adt_a08",
        "adt_a40",
        "oru_r01",
        "orm_o01",
        "oml_o21",
        "vxu_v04",
        "siu_s12",
        "mdm_t02",
    } <= families
    for case in CASES:
        assert case.with_suffix(".expected.json").exists(), case


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_vector(case: Path) -> None:
    expected = json.loads(case.with_suffix(".expected.json").read_text(encoding="utf-8"))
    actual = convert(case.read_bytes()).bundle
    assert normalised(actual) == normalised(expected)


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_vector_is_deterministic(case: Path) -> None:
    raw = case.read_bytes()
    assert convert(raw).bundle == convert(raw).bundle
