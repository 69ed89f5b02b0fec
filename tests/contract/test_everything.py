"""`Patient/[id]/$everything` and `Patient/$everything` on every engine.

Expected sets are written by hand from
https://hl7.org/fhir/R4/patient-operation-everything.html and the Patient
CompartmentDefinition: the patient first, its compartment, what that references.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from fhir_server.context import SYSTEM, AccessContext, AllowAll
from fhir_server.errors import BadRequest, NotFound
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage, StoredResource
from tests.support.loaded import loaded_service

RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "org1", "name": "General"},
    {"resourceType": "Practitioner", "id": "gp1"},
    {"resourceType": "Medication", "id": "med1"},
    {
        "resourceType": "Patient",
        "id": "p1",
        "managingOrganization": {"reference": "Organization/org1"},
    },
    {"resourceType": "Patient", "id": "p2"},
    {"resourceType": "Patient", "id": "p3"},
    {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Practitioner/gp1"}],
    },
    {
        "resourceType": "Observation",
        "id": "o2",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/p2"},
    },
    {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "Medication/med1"},
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
    },
    # references gp1 but not p1: not in p1's compartment
    {
        "resourceType": "Basic",
        "id": "b1",
        "code": {"text": "note"},
        "author": {"reference": "Practitioner/gp1"},
    },
]
P1_ALL = [
    "Patient/p1",
    "Condition/c1",
    "Encounter/e1",
    "Medication/med1",
    "MedicationRequest/mr1",
    "Observation/o1",
    "Organization/org1",
    "Practitioner/gp1",
]


@pytest.fixture
async def service(storage: Storage) -> FhirService:
    return await loaded_service(storage, RESOURCES)


async def call(svc: FhirService, path: str, *query: tuple[str, str]) -> dict[str, Any]:
    response = await svc.handle(Request("GET", path, tuple(query), context=SYSTEM))
    assert response.status == 200
    body = response.body
    assert body is not None
    return orjson.loads(body) if isinstance(body, bytes) else body


def refs(bundle: dict[str, Any]) -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
    ]


def link(bundle: dict[str, Any], relation: str) -> list[tuple[str, str]] | None:
    for found in bundle.get("link", []):
        if found["relation"] == relation:
            return parse_qsl(urlsplit(found["url"]).query)
    return None


async def all_pages(svc: FhirService, path: str, *query: tuple[str, str]) -> list[str]:
    page = await call(svc, path, *query)
    out = refs(page)
    while (following := link(page, "next")) is not None:
        page = await call(svc, path, *following)
        out.extend(refs(page))
    return out


async def test_everything_of_one_patient(service: FhirService) -> None:
    found = await call(service, "Patient/p1/$everything")
    assert found["type"] == "searchset" and found["total"] == len(P1_ALL)
    assert refs(found) == P1_ALL  # the patient first, then by type and id
    modes = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": e["search"]["mode"]
        for e in found["entry"]
    }
    assert modes["Observation/o1"] == "match" and modes["Medication/med1"] == "include"
    assert refs(await call(service, "Patient/p3/$everything")) == ["Patient/p3"]


async def test_type_and_since(service: FhirService) -> None:
    found = await call(service, "Patient/p1/$everything", ("_type", "Observation,Practitioner"))
    assert refs(found) == ["Patient/p1", "Observation/o1", "Practitioner/gp1"]
    for empty in ("", ",,", " , "):  # an empty _type is ignored, as in searches
        assert refs(await call(service, "Patient/p1/$everything", ("_type", empty))) == P1_ALL
    # o1 changes now; everything else was written before b1 was, the last one
    before = (await call(service, "Basic/b1"))["meta"]["lastUpdated"]
    o1 = next(r for r in RESOURCES if r["id"] == "o1")
    response = await service.handle(
        Request("PUT", "Observation/o1", body={**o1, "status": "amended"}, context=SYSTEM)
    )
    assert response.status == 200
    since = await call(service, "Patient/p1/$everything", ("_since", before))
    # the patient always (and the organization it references); o1 changed at or after
    # `before`, and gp1 is what o1 references
    assert refs(since) == ["Patient/p1", "Observation/o1", "Organization/org1", "Practitioner/gp1"]


async def test_paging_visits_each_resource_once(service: FhirService) -> None:
    first = await call(service, "Patient/p1/$everything", ("_count", "3"))
    assert refs(first) == P1_ALL[:3] and link(first, "previous") is None
    assert await all_pages(service, "Patient/p1/$everything", ("_count", "3")) == P1_ALL
    second_query = link(first, "next")
    assert second_query is not None
    second = await call(service, "Patient/p1/$everything", *second_query)
    assert refs(second) == P1_ALL[3:6]
    back = link(second, "previous")
    assert back is not None
    assert refs(await call(service, "Patient/p1/$everything", *back)) == P1_ALL[:3]
    # a resource created between two pages, sorting after the cursor, shows up; none repeats
    response = await service.handle(
        Request(
            "PUT",
            "Observation/o9",
            body={
                "resourceType": "Observation",
                "id": "o9",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": "Patient/p1"},
            },
            context=SYSTEM,
        )
    )
    assert response.status == 201
    rest = refs(second)
    page = second
    while (following := link(page, "next")) is not None:
        page = await call(service, "Patient/p1/$everything", *following)
        rest.extend(refs(page))
    assert rest == [
        "Medication/med1",
        "MedicationRequest/mr1",
        "Observation/o1",
        "Observation/o9",
        "Organization/org1",
        "Practitioner/gp1",
    ]


async def test_everything_of_every_patient(service: FhirService) -> None:
    found = await all_pages(service, "Patient/$everything", ("_count", "4"))
    assert found == [*P1_ALL, "Patient/p2", "Observation/o2", "Patient/p3"]
    assert await all_pages(service, "Patient/$everything", ("_count", "1")) == found


async def test_errors(service: FhirService) -> None:
    with pytest.raises(NotFound):
        await call(service, "Patient/nobody/$everything")
    with pytest.raises(BadRequest, match="_since"):
        await call(service, "Patient/p1/$everything", ("_since", "yesterday"))
    with pytest.raises(BadRequest, match="_type"):
        await call(service, "Patient/p1/$everything", ("_type", "Nonsense"))
    with pytest.raises(BadRequest, match="_page"):
        await call(service, "Patient/p1/$everything", ("_page", "!!"))
    forged = base64.urlsafe_b64encode(b'{"k": 5, "p": "p1", "a": null}').decode()
    with pytest.raises(BadRequest, match="_page"):
        await call(service, "Patient/$everything", ("_page", forged))
    with pytest.raises(NotFound):
        await call(service, "Observation/o1/$everything")


class HidePractitioners(AllowAll):
    def visible(self, ctx: AccessContext, rec: StoredResource) -> bool:
        return rec.type != "Practitioner" and rec.id != "mr1"


async def test_everything_honours_the_access_policy(service: FhirService) -> None:
    service.policy = HidePractitioners()
    found = refs(await call(service, "Patient/p1/$everything"))
    # without mr1, its medication is not referenced from anything visible
    assert found == [
        "Patient/p1",
        "Condition/c1",
        "Encounter/e1",
        "Observation/o1",
        "Organization/org1",
    ]
