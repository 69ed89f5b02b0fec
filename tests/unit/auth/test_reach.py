"""`OrganizationReach`: a practitioner's organizations (PractitionerRole) and the patients
they manage, looked up as the server, remembered, and forgotten when a Patient is written.
On every storage engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.auth.reach import OrganizationReach
from fhir_server.context import SYSTEM, AccessContext
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from tests.support.auth_ui_stack import RESOURCES
from tests.support.engines import ENGINE_FACTORIES


@pytest.fixture(params=sorted(ENGINE_FACTORIES))
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FhirService]:
    storage = await ENGINE_FACTORIES[request.param](tmp_path)
    svc = FhirService(storage, max_count=2)  # small pages: every page is read
    for resource in RESOURCES:
        path = f"{resource['resourceType']}/{resource['id']}"
        await svc.handle(Request("PUT", path, body=resource, context=SYSTEM))
    yield svc
    await storage.close()


def token(fhir_user: str | None, role: str = "clinician") -> AccessContext:
    return AccessContext(
        subject="u", scopes=frozenset({"user/*.rs"}), fhir_user=fhir_user, role=role
    )


async def test_a_practitioner_reaches_the_patients_of_their_organizations(
    service: FhirService,
) -> None:
    reach = OrganizationReach(service, ttl=3600)
    ctx = await reach.apply(token("Practitioner/pr1"))
    assert ctx.user_organizations == frozenset({"Organization/org1"})
    assert ctx.user_patients == frozenset({"p1", "p2"})
    assert (await reach.apply(token("Practitioner/pr2"))).user_patients == frozenset()
    by_role = await reach.apply(token("PractitionerRole/prr1"))
    assert by_role.user_patients == frozenset({"p1", "p2"})


async def test_a_new_patient_is_reached_at_once(service: FhirService) -> None:
    reach = OrganizationReach(service, ttl=3600)
    assert (await reach.apply(token("Practitioner/pr1"))).user_patients == frozenset({"p1", "p2"})
    await service.handle(
        Request(
            "PUT",
            "Patient/p4",
            context=SYSTEM,
            body={
                "resourceType": "Patient",
                "id": "p4",
                "managingOrganization": {"reference": "Organization/org1"},
            },
        )
    )
    after = await reach.apply(token("Practitioner/pr1"))
    assert after.user_patients == frozenset({"p1", "p2", "p4"})


@pytest.mark.parametrize(
    "caller",
    [
        token(None),
        token("Patient/p1", "patient"),
        token("Practitioner/pr1", "admin"),
        token("RelatedPerson/rp1", "patient"),
        SYSTEM,
    ],
)
async def test_others_are_left_as_they_are(service: FhirService, caller: AccessContext) -> None:
    assert await OrganizationReach(service).apply(caller) is caller
