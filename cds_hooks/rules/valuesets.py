"""The value sets the rule services use, shipped as FHIR ValueSets (`valuesets/*.json`).

Each is an enumerated `compose` (codes listed one by one), so membership needs no code system
content: `ShippedCodes` answers it from the files alone. The same resources can be handed to
the terminology service (`value_sets()`); a ValueSet a site stores with the same canonical url
then takes precedence there, which is how a site replaces one of these lists with its own.
A service asks a `CodeMembership` (the terminology service, or `ShippedCodes`), and
`Membership` asks the terminology service first and the shipped lists when it does not know.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any, Protocol

import orjson

from cds_hooks.rules.fhirdata import codings

BASE = "http://fhir-server.local/ValueSet/cds-"
DIABETES = BASE + "diabetes"
ANTIHYPERTENSIVES = BASE + "antihypertensives"
STATINS = BASE + "statins"
ATRIAL_FIBRILLATION = BASE + "atrial-fibrillation"
HEART_FAILURE = BASE + "heart-failure"
HYPERTENSION = BASE + "hypertension"
STROKE_TIA_THROMBOEMBOLISM = BASE + "stroke-tia-thromboembolism"
VASCULAR_DISEASE = BASE + "vascular-disease"
CUSTOM_FOOT_ORTHOSIS = BASE + "custom-foot-orthosis"
CLINICAL_ASCVD = BASE + "clinical-ascvd"


class CodeMembership(Protocol):
    """Whether `system|code` is in the value set `url`; None when the set is unknown
    (the signature of `terminology.Terminology.contains`)."""

    def contains(self, value_set_url: str, system: str | None, code: str) -> bool | None: ...


@cache
def value_sets() -> tuple[dict[str, Any], ...]:
    """The shipped ValueSet resources."""
    folder = resources.files("cds_hooks.rules").joinpath("valuesets")
    found = [orjson.loads(f.read_bytes()) for f in folder.iterdir() if f.name.endswith(".json")]
    return tuple(sorted(found, key=lambda vs: str(vs["url"])))


class ShippedCodes:
    """Membership in the shipped (enumerated) value sets."""

    def __init__(self, sets: Iterable[dict[str, Any]] | None = None) -> None:
        self._codes: dict[str, frozenset[tuple[str, str]]] = {}
        for value_set in value_sets() if sets is None else sets:
            self._codes[value_set["url"]] = frozenset(
                (include["system"], concept["code"])
                for include in value_set["compose"]["include"]
                for concept in include.get("concept", ())
            )

    def contains(self, value_set_url: str, system: str | None, code: str) -> bool | None:
        codes = self._codes.get(value_set_url)
        if codes is None:
            return None
        return (system, code) in codes


class Membership:
    """The terminology service's answer when it has one, else the shipped lists'."""

    def __init__(self, terminology: CodeMembership | None = None) -> None:
        self._first = terminology
        self._shipped = ShippedCodes()

    def contains(self, value_set_url: str, system: str | None, code: str) -> bool | None:
        if self._first is not None:
            answer = self._first.contains(value_set_url, system, code)
            if answer is not None:
                return answer
        return self._shipped.contains(value_set_url, system, code)

    def concept_in(self, concept: Any, value_set_url: str) -> bool:
        """Whether any coding of a CodeableConcept is in the value set."""
        return any(self.contains(value_set_url, s, c) for s, c in codings(concept))
