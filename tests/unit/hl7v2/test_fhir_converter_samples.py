"""FHIR-Converter's public sample messages (a committed subset, MIT): each is accepted, and
most of the resource types FHIR-Converter derives from it are in our Bundle too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.hl7v2.convert import convert

SAMPLES = Path(__file__).resolve().parents[2] / "vectors" / "hl7v2" / "fhir_converter"
EXPECTED: dict[str, list[str]] = json.loads((SAMPLES / "expected_types.json").read_text())
FLOOR = 0.75  # types present over the subset, as measured; the corpus target is 0.90


def ours(name: str) -> set[str]:
    bundle = convert((SAMPLES / "messages" / name).read_bytes()).bundle
    return {e["resource"]["resourceType"] for e in bundle["entry"]}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_is_accepted_with_its_core_resources(name: str) -> None:
    found = ours(name)
    assert {"Patient", "MessageHeader", "Provenance", "Organization", "Device"} <= found


def test_types_present_over_the_subset() -> None:
    wanted = sum(len(types) for types in EXPECTED.values())
    present = sum(len(set(types) & ours(name)) for name, types in EXPECTED.items())
    assert present / wanted >= FLOOR
