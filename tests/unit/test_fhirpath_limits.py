"""FHIRPath that clients write always ends (fhir_server.fhirpath_limits): `repeat()`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.models import models

from fhir_server.errors import FhirError
from fhir_server.fhirpath_limits import bounded_repeat
from fhir_server.model.fhirpath_patch import apply_fhirpath_patch

HANG = 60.0  # seconds: far beyond any real evaluation; reaching it means it never ends


def finished(work: Callable[[], Any]) -> Any:
    """The outcome of `work()` (its value or the exception it raised); fails if it hangs."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG)
    if thread.is_alive():
        pytest.fail("the evaluation never ended")
    return outcome[0]


def evaluate(resource: dict[str, Any], expression: str) -> Any:
    return finished(lambda: fhirpathpy.evaluate(resource, expression, model=models["r4"]))


def test_the_modules_that_evaluate_client_fhirpath_install_it() -> None:
    import fhir_server.search.extract  # noqa: F401

    repeat: Any = invocation_registry["repeat"]
    assert repeat["fn"] is bounded_repeat


def test_repeat_returns_computed_values_without_repeating_on_them() -> None:
    assert evaluate({"resourceType": "Patient"}, "(1 | 2).repeat($this + 1)") == [2, 3]
    given = {"resourceType": "Patient", "name": [{"given": ["a"]}]}
    assert evaluate(given, "Patient.name.given.repeat($this + 'x')") == ["ax"]


def test_repeat_still_walks_the_elements_of_a_resource() -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [
            {"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string"}]},
            {"linkId": "2", "type": "string"},
        ],
    }
    found = evaluate(questionnaire, "Questionnaire.repeat(item).linkId")
    assert sorted(found) == ["1", "1.1", "2"]


def test_a_patch_path_that_repeats_a_computed_value_is_refused() -> None:
    patient = {"resourceType": "Patient", "name": [{"given": ["a"]}]}
    patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "delete"},
                    {"name": "path", "valueString": "Patient.name.given.repeat($this + 'x')"},
                ],
            }
        ],
    }
    error = finished(lambda: apply_fhirpath_patch(patient, patch))
    assert isinstance(error, FhirError) and error.status in (400, 422)
