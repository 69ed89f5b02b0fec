"""Roles -> grantable scopes, the consent screen's plain words, and what is granted."""

from __future__ import annotations

import pytest

from fhir_server.auth.consent import choices, describe, granted
from fhir_server.auth.launch import LaunchError, launch_redirect, parse_context
from fhir_server.auth.roles import may_grant
from fhir_server.auth.scopes import parse_scope


@pytest.mark.parametrize(
    ("role", "scope", "allowed"),
    [
        ("clinician", "user/*.cruds", True),
        ("clinician", "patient/Observation.write", True),
        ("clinician", "system/*.rs", False),
        ("nurse", "user/*.read", True),
        ("nurse", "user/Observation.cu", True),
        ("nurse", "user/MedicationRequest.c", False),
        ("nurse", "user/*.write", False),
        ("front-desk", "user/Patient.cruds", True),
        ("front-desk", "user/Appointment.rs", True),
        ("front-desk", "user/Coverage.read", True),
        ("front-desk", "user/Observation.rs", False),
        ("front-desk", "user/*.rs", False),  # "*" would reach clinical data
        ("patient", "patient/*.rs", True),
        ("patient", "patient/Observation.rs?category=laboratory", True),
        ("patient", "patient/Observation.c", False),
        ("patient", "user/Observation.rs", False),
        ("admin", "system/*.cruds", True),
        ("admin", "user/*.*", True),
        ("patient", "openid", True),
        ("patient", "offline_access", True),
        ("admin", "nonsense", False),
        ("admin", "user/Observation.xyz", False),
    ],
)
def test_roles_grant_what_they_cover(role: str, scope: str, allowed: bool) -> None:
    assert may_grant(role, scope) is allowed


def test_scopes_v1_and_v2_parse_to_letters() -> None:
    assert parse_scope("patient/*.read") == parse_scope("patient/*.rs")
    assert parse_scope("user/Observation.write").letters == frozenset("cud")
    assert parse_scope("user/Observation.rs?code=1234").type == "Observation"
    assert parse_scope("launch/patient") is None


@pytest.mark.parametrize(
    ("scope", "words"),
    [
        ("patient/Observation.rs", "Read and search observations about the selected patient"),
        ("user/*.cruds", "Create, read, update, delete and search all data that you can access"),
        (
            "patient/MedicationRequest.read",
            "Read and search medication requests about the selected patient",
        ),
        (
            "patient/Observation.rs?category=laboratory",
            "Read and search observations about the selected patient, only where category is "
            "laboratory",
        ),
        ("user/AllergyIntolerance.c", "Create allergy intolerances that you can access"),
        ("offline_access", "Keep access after you close the app, until you revoke it"),
    ],
)
def test_scopes_in_plain_words(scope: str, words: str) -> None:
    assert describe(scope) == words


def test_granted_keeps_fixed_scopes_and_ticked_optional_ones_the_role_allows() -> None:
    requested = ["openid", "launch/patient", "patient/*.rs", "patient/*.cud", "offline_access"]
    lines = choices(requested, "patient")
    assert [(c.scope, c.allowed, c.optional) for c in lines] == [
        ("openid", True, False),
        ("launch/patient", True, False),
        ("patient/*.rs", True, True),
        ("patient/*.cud", False, True),
        ("offline_access", True, True),
    ]
    assert granted(requested, "patient", ["patient/*.cud", "offline_access", "user/*.*"]) == [
        "openid",
        "launch/patient",
        "offline_access",
    ]


def test_launch_context_parameters() -> None:
    context = parse_context(
        [
            ("patient", "Patient/p1"),
            ("encounter", "e1"),
            ("fhirContext", "DiagnosticReport/9"),
            ("fhirContext", '{"reference": "Task/1", "role": "x"}'),
            ("need_patient_banner", "true"),
            ("intent", "sign-off"),
            ("smart_style_url", "https://ehr.test/style.json"),
        ]
    )
    assert context == {
        "patient": "p1",
        "encounter": "e1",
        "need_patient_banner": True,
        "fhirContext": [{"reference": "DiagnosticReport/9"}, {"reference": "Task/1", "role": "x"}],
        "intent": "sign-off",
        "smart_style_url": "https://ehr.test/style.json",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("patient", "a b"),
        ("fhirContext", "{]"),
        ("fhirContext", '{"x": 1}'),
        ("smart_style_url", "javascript:x"),
        ("need_patient_banner", "1"),
    ],
)
def test_bad_launch_context_is_refused_naming_the_parameter(name: str, value: str) -> None:
    with pytest.raises(LaunchError, match=name):
        parse_context([(name, value)])


def test_launch_redirect_adds_iss_and_launch() -> None:
    assert launch_redirect("https://app.test/launch?x=1", "https://ehr.test/fhir", "L1") == (
        "https://app.test/launch?x=1&iss=https%3A%2F%2Fehr.test%2Ffhir&launch=L1"
    )
