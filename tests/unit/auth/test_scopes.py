"""SMART scopes v1 and v2 as the policy reads them; what does not parse grants nothing."""

from __future__ import annotations

import pytest

from fhir_server.auth.scopes import Scope, parse_scope, parse_scopes

CASES = [
    ("patient/*.read", Scope("patient", "*", frozenset("rs"))),
    ("user/Observation.write", Scope("user", "Observation", frozenset("cud"))),
    ("system/*.*", Scope("system", "*", frozenset("cruds"))),
    ("user/*.*", Scope("user", "*", frozenset("cruds"))),
    ("patient/Observation.rs", Scope("patient", "Observation", frozenset("rs"))),
    ("patient/Observation.cruds", Scope("patient", "Observation", frozenset("cruds"))),
    ("user/Patient.cud", Scope("user", "Patient", frozenset("cud"))),
    ("system/Encounter.s", Scope("system", "Encounter", frozenset("s"))),
    (
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/"
        "observation-category|laboratory",
        Scope(
            "patient",
            "Observation",
            frozenset("rs"),
            (
                (
                    "category",
                    "http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
                ),
            ),
        ),
    ),
    (
        "patient/Observation.rs?category=laboratory&code=1234-5",
        Scope(
            "patient",
            "Observation",
            frozenset("rs"),
            (("category", "laboratory"), ("code", "1234-5")),
        ),
    ),
]

NOT_RESOURCE_SCOPES = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
]

INVALID = [
    "patient/Observation.sr",  # letters out of order
    "patient/Observation.rr",
    "patient/Observation.x",
    "patient/Observation.",
    "patient/Observation",
    "clinic/Observation.rs",  # unknown level
    "patient/observation.rs",  # a type starts with a capital
    "*.*",  # no level
    "patient/*.read?category=x",  # a query is a v2 feature
    "patient/Observation.rs?",  # an empty query
    "patient/Observation.rs?category",  # a name without a value
    "Patient/*.read",
    "",
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_scopes_parse(text: str, expected: Scope) -> None:
    assert parse_scope(text) == expected


@pytest.mark.parametrize("text", NOT_RESOURCE_SCOPES + INVALID)
def test_non_resource_and_invalid_scopes_grant_nothing(text: str) -> None:
    assert parse_scope(text) is None


def test_a_token_scope_set_keeps_only_clinical_scopes() -> None:
    parsed = parse_scopes(
        frozenset({"openid", "fhirUser", "patient/*.read", "bad/x.y", "user/Observation.rs"})
    )
    assert {(s.level, s.type) for s in parsed} == {("patient", "*"), ("user", "Observation")}


def test_grants_by_letter_and_type() -> None:
    scope = parse_scope("patient/Observation.rs")
    assert scope is not None
    assert scope.grants("r", "Observation") and scope.grants("s", None)
    assert not scope.grants("c", "Observation") and not scope.grants("r", "Condition")
    wildcard = parse_scope("user/*.cu")
    assert wildcard is not None and wildcard.grants("u", "Condition")
