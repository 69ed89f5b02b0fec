"""The fast routes the HL7 v2 write path relies on give what the slow routes give.

Composite search parameters: their components are followed over the JSON
(`paths.compile_relative`) instead of fhirpathpy; the index values must be the same, in the
same order, for every composite parameter of the R4 package.

Validation with `ModelVerdicts` (the R4B models once per shape, the walk always): the same
verdict as full validation, on the converter's output and on it with bad values put in.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2.convert import convert
from adapters.hl7v2.message import MessageError
from fhir_server.errors import InvalidResource
from fhir_server.model.validate import ModelVerdicts, shape_of, validate_resource
from fhir_server.search.extract import CompositePlan, Indexer
from fhir_server.search.registry import load_registry
from fhir_server.search.values import CompositeValue

QUANTITY = {"value": 5.4, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
CONCEPT = {"coding": [{"system": "http://loinc.org", "code": "2345-7"}], "text": "Glucose"}
CONTEXT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/usage-context-type",
    "code": "focus",
}
VALUES: list[dict[str, Any]] = [
    {"valueQuantity": QUANTITY},
    {"valueCodeableConcept": CONCEPT},
    {"valueString": "positive"},
    {"valueDateTime": "2024-01-02T03:04:05Z"},
    {"valuePeriod": {"start": "2024-01-02", "end": "2024-01-03"}},
    {"valueRange": {"low": {"value": 1, "unit": "mg"}, "high": {"value": 4, "unit": "mg"}}},
    {"valueBoolean": True},
    {"valueReference": {"reference": "Patient/1"}},
    {},
]


def _observations() -> list[dict[str, Any]]:
    out = []
    for value in VALUES:
        for other in VALUES[:4]:
            out.append(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": CONCEPT,
                    **value,
                    "component": [
                        {
                            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                            **other,
                        },
                        {"code": {"text": "no value"}},
                        {"code": CONCEPT, **value},
                    ],
                }
            )
    return out


def _others() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    registry = load_registry()
    for type in sorted(registry.resource_types):
        if not any(p.type == "composite" for p in registry.params_for(type).values()):
            continue
        for value in VALUES:
            out.append(
                {
                    "resourceType": type,
                    "useContext": [
                        {"code": CONTEXT_TYPE, **value},
                        {"code": CONTEXT_TYPE, **VALUES[0]},
                    ],
                    "relatesTo": [
                        {"code": "replaces", "target": {"reference": "DocumentReference/1"}}
                    ],
                    "characteristic": [{"code": CONCEPT, "exclude": False, **value}],
                    "referenceSeq": {
                        "chromosome": CONCEPT,
                        "windowStart": 1,
                        "windowEnd": 9,
                        "referenceSeqId": CONCEPT,
                    },
                    "variant": [{"start": 2, "end": 3}],
                }
            )
    return out


@pytest.mark.parametrize("resource", _observations() + _others())
def test_composite_fast_route_matches_fhirpathpy(resource: dict[str, Any]) -> None:
    fast, slow = Indexer(load_registry()), Indexer(load_registry(), fast_paths=False)
    composites = {
        p.code for p in fast.plans(resource["resourceType"]) if isinstance(p, CompositePlan)
    }
    expected = slow.values_of(resource, composites)
    assert fast.values_of(resource, composites) == expected
    assert all(isinstance(v, CompositeValue) for v in expected)
    assert fast.failures == slow.failures == {}


def test_common_composites_take_the_fast_route() -> None:
    indexer = Indexer(load_registry())
    plans = {p.code: p for p in indexer.plans("Observation") if isinstance(p, CompositePlan)}
    for code in (
        "code-value-quantity",
        "code-value-concept",
        "code-value-string",
        "code-value-date",
        "combo-code-value-quantity",
        "component-code-value-quantity",
    ):
        for _, _, fast in plans[code].bases:
            assert all(quick is not None for quick in fast), code


# --- R4B model verdicts by shape (what the HL7 v2 ingestor validates with) -----------------

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "hl7v2"
BAD_VALUES: list[Any] = [
    "",
    " x",
    "not a date",
    "2024-02-30",
    "a b  c",
    3,
    2.5,
    True,
    None,
    "urn:uuid:zz",
    "\u00e9t\u00e9",
    -1,
    0,
    [],
    {},
    "<div>x</div>",
]


def _converted() -> list[dict[str, Any]]:
    resources = []
    for case in sorted(VECTORS.glob("*/*.hl7")):
        try:
            bundle = convert(case.read_bytes()).bundle
        except MessageError:
            continue
        resources += [entry["resource"] for entry in bundle["entry"]]
    return resources


def _verdict(resource: dict[str, Any], verdicts: ModelVerdicts | None) -> list[tuple[Any, ...]]:
    try:
        validate_resource(resource, verdicts=verdicts)
    except InvalidResource as error:
        return [(i.diagnostics, i.code, i.expression) for i in error.issues]
    return []


def _primitive_paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [
            p for k, v in node.items() if k != "resourceType" for p in _primitive_paths(v, (*at, k))
        ]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _primitive_paths(v, (*at, i))]
    return [at]


def _replaced(resource: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)
    return out


def test_converted_resources_are_model_valid_and_cached_by_shape() -> None:
    resources = _converted()
    assert len(resources) > 50
    verdicts = ModelVerdicts()
    for resource in resources:
        assert _verdict(resource, None) == []
        assert _verdict(resource, verdicts) == []
    shapes = len(verdicts)
    assert 0 < shapes < len(resources)  # shapes repeat: the models ran fewer times
    for resource in resources:  # all known now: same verdict, no new shape
        assert _verdict(resource, verdicts) == []
    assert len(verdicts) == shapes


def test_a_known_shape_with_bad_values_fails_as_without_verdicts() -> None:
    """Values are the walk's to check: a known shape never lets a bad value through."""
    rnd = random.Random(7)
    resources = _converted()
    verdicts = ModelVerdicts()
    for resource in resources:
        _verdict(resource, verdicts)
    checked = 0
    for resource in rnd.sample(resources, 40):
        paths = _primitive_paths(resource)
        for path in rnd.sample(paths, min(8, len(paths))):
            for value in rnd.sample(BAD_VALUES, 4):
                candidate = _replaced(resource, path, value)
                assert _verdict(candidate, verdicts) == _verdict(candidate, None), (path, value)
                checked += 1
    assert checked > 500


def test_a_new_shape_runs_the_models() -> None:
    verdicts = ModelVerdicts()
    patient = {"resourceType": "Patient", "name": [{"family": "Doe"}]}
    assert _verdict(patient, verdicts) == [] and len(verdicts) == 1
    # Another shape: the models run on it (and remember it once they accept it).
    odd = {"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Jo", "Al"]}]}
    assert _verdict(odd, verdicts) == _verdict(odd, None)
    assert len(verdicts) == 2
    assert shape_of(patient) != shape_of(odd)
    assert shape_of({**patient, "resourceType": "Person"}) != shape_of(patient)


def test_verdicts_are_bounded() -> None:
    verdicts = ModelVerdicts(limit=2)
    for family in ({"family": "A"}, {"given": ["B"]}, {"text": "C"}):
        assert _verdict({"resourceType": "Patient", "name": [family]}, verdicts) == []
    assert len(verdicts) == 1
