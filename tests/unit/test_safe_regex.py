"""Client-written regular expressions run on RE2: no catastrophic backtracking, and a pattern
RE2 cannot run is a 400 that says so (ValueSet regex filters, FHIRPath matches())."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import BadRequest
from fhir_server.model.fhirpath_patch import apply_fhirpath_patch
from terminology import Terminology
from tests.unit.terminology.samples import value_set

SYSTEM = "http://example.org/cs/long-codes"
# Python's backtracking `re` needs about 2**40 steps to fail `(\w+)+!` on this code.
LONG = "a" * 40
CATASTROPHIC = r"(\w+)+!"


@pytest.fixture
def terminology() -> Terminology:
    terminology = Terminology(include_core=False)
    terminology.put(
        {
            "resourceType": "CodeSystem",
            "id": "long",
            "url": SYSTEM,
            "status": "active",
            "content": "complete",
            "concept": [{"code": LONG, "display": LONG}, {"code": "ok!", "display": "Fine!"}],
        }
    )
    return terminology


def _expand(terminology: Terminology, prop: str, pattern: str) -> list[str]:
    compose = {
        "include": [
            {"system": SYSTEM, "filter": [{"property": prop, "op": "regex", "value": pattern}]}
        ]
    }
    result = terminology.expand(value_set("http://example.org/vs/x", compose))
    return [c["code"] for c in result["expansion"].get("contains", [])]


@pytest.mark.parametrize("prop", ["code", "display"])
def test_a_catastrophic_pattern_is_answered_at_once(terminology: Terminology, prop: str) -> None:
    assert _expand(terminology, prop, CATASTROPHIC) == ["ok!"]


@pytest.mark.parametrize("pattern", [r"(a)\1", r"a(?=b)", r"(?<!x)a"])
def test_backreferences_and_lookaround_are_a_clear_400(
    terminology: Terminology, pattern: str
) -> None:
    with pytest.raises(BadRequest, match="RE2") as raised:
        _expand(terminology, "code", pattern)
    assert pattern in raised.value.diagnostics


def _matches_patch(pattern: str) -> dict[str, Any]:
    path = f"Patient.name.where(family.matches('{pattern}'))"
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "delete"},
                    {"name": "path", "valueString": path},
                ],
            }
        ],
    }


def test_fhirpath_matches_runs_on_re2() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": LONG}, {"family": "Bond!"}]}
    patched = apply_fhirpath_patch(patient, _matches_patch(CATASTROPHIC.replace("\\", "\\\\")))
    assert patched["name"] == [{"family": LONG}]


def test_fhirpath_matches_with_a_backreference_is_a_400() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "aa"}]}
    with pytest.raises(BadRequest, match="RE2"):
        apply_fhirpath_patch(patient, _matches_patch(r"(a)\\1"))
