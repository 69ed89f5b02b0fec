"""Which requested scopes a client's registered scopes cover: read as the resource server
reads them, so a client is never given a scope the resource server would not parse."""

from __future__ import annotations

import pytest

from fhir_server.auth.clients import covers


@pytest.mark.parametrize(
    ("allowed", "requested", "covered"),
    [
        ("system/*.rs", "system/Patient.r", True),
        ("system/*.rs", "system/Patient.rs", True),
        ("system/*.read", "system/Patient.rs", True),
        ("patient/*.*", "patient/Observation.cruds", True),
        ("system/*.rs", "system/Patient.rsd", False),
        ("system/Patient.rs", "system/Observation.r", False),
        ("user/*.rs", "system/Patient.r", False),
        ("patient/Observation.rs?category=laboratory", "patient/Observation.rs", False),
        ("patient/Observation.rs", "patient/Observation.rs?category=laboratory", True),
        (
            "patient/Observation.rs?category=laboratory",
            "patient/Observation.r?category=laboratory",
            True,
        ),
        ("openid", "openid", True),
        # what the resource server would not parse is not handed out
        ("system/*.rs", "system/Patient.sr", False),
        ("patient/*.read", "patient/Observation.read?category=laboratory", False),
        ("patient/*.rs", "patient/observation.rs", False),
    ],
)
def test_registered_scopes_cover(allowed: str, requested: str, covered: bool) -> None:
    assert covers(allowed, requested) is covered
