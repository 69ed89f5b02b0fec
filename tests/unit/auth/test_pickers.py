"""The pickers under the resource server's policy (authorization on): each lookup carries
the user's role and FHIR identity, so a practitioner's `user/` rights reach patients and a
patient user's `patient/` rights reach their own record. On every storage engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.auth import pickers
from fhir_server.auth.policy import SmartPolicy
from fhir_server.auth.users import User
from fhir_server.context import SYSTEM
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.search.registry import build_registry
from tests.support.auth_ui_stack import RESOURCES
from tests.support.engines import ENGINE_FACTORIES


def user(name: str, role: str, fhir_user: str | None) -> User:
    return User(
        id=f"u-{name}", name=name, role=role, fhir_user=fhir_user, password_hash="", created=0.0
    )


DOC = user("doc", "clinician", "Practitioner/pr1")
PAT = user("pat", "patient", "Patient/p1")
MUM = user("mum", "patient", "RelatedPerson/rp1")


@pytest.fixture(params=sorted(ENGINE_FACTORIES))
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FhirService]:
    storage = await ENGINE_FACTORIES[request.param](tmp_path)
    registry = build_registry()
    svc = FhirService(storage, registry=registry, policy=SmartPolicy(registry))
    for resource in RESOURCES:
        path = f"{resource['resourceType']}/{resource['id']}"
        await svc.handle(Request("PUT", path, body=resource, context=SYSTEM))
    yield svc
    await storage.close()


def ids(choices: list[pickers.Choice] | None) -> list[str]:
    return sorted(c.id for c in choices or [])


async def test_a_clinician_picks_the_patients_of_their_organizations(service: FhirService) -> None:
    assert ids(await pickers.patients(service, DOC, "", "organization")) == ["p1", "p2"]
    assert ids(await pickers.patients(service, DOC, "", "all")) == ["p1", "p2", "p3"]
    assert ids(await pickers.encounters(service, DOC, "p1")) == ["e1", "e2"]
    assert await pickers.patient(service, DOC, "p3") is not None


async def test_a_patient_user_sees_only_their_own_record(service: FhirService) -> None:
    found = await pickers.patient(service, PAT, "p1")
    assert found is not None and found.label == "Alice Able"
    assert await pickers.patient(service, PAT, "p2") is None
    related = await pickers.patient(service, MUM, "p2")
    assert related is not None and related.label == "Bob Baker"
    assert await pickers.patient(service, MUM, "p1") is None


def test_the_user_context_carries_role_and_fhir_user() -> None:
    ctx = pickers.user_context(DOC)
    assert (ctx.role, ctx.fhir_user, ctx.subject) == ("clinician", "Practitioner/pr1", "u-doc")
