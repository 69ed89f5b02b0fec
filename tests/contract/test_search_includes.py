"""`_include`, `_revinclude` and compartment search on every engine.

Expected results are written by hand from https://hl7.org/fhir/R4/search.html#include and
https://hl7.org/fhir/R4/compartmentdefinition-patient.html: included resources come once,
with search mode `include`, never repeating a match; `:iterate` follows what was included;
a compartment holds the resources whose listed parameters reference its owner.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_server.context import SYSTEM, AccessContext, AllowAll
from fhir_server.errors import BadRequest, NotFound
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.search.conditions import IdCondition, SearchQuery
from fhir_server.storage.base import Storage, StoredResource
from tests.support.loaded import loaded_service

GP = {"resourceType": "Practitioner", "id": "gp1", "name": [{"family": "House"}]}
ORG = {"resourceType": "Organization", "id": "org1", "name": "General"}
PATIENTS: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "p1",
        "managingOrganization": {"reference": "Organization/org1"},
        "generalPractitioner": [{"reference": "Practitioner/gp1"}],
    },
    {
        "resourceType": "Patient",
        "id": "p2",
        "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}],
    },
    {"resourceType": "Patient", "id": "p3"},
]


def observation(
    id: str, subject: str, performer: str | None = None, code: str = "8867-4"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": subject},
    }
    if performer:
        body["performer"] = [{"reference": performer}]
    return body


RESOURCES: list[dict[str, Any]] = [
    ORG,
    GP,
    *PATIENTS,
    observation("o1", "Patient/p1", "Practitioner/gp1"),
    observation("o2", "Patient/p1"),
    observation("o3", "Patient/p2", code="2339-0"),
    observation("o4", "Group/g1", "Patient/p1"),  # p1 as performer: in p1's compartment
    {
        "resourceType": "Provenance",
        "id": "prov1",
        "recorded": "2020-01-01T00:00:00Z",
        "target": [{"reference": "Observation/o1"}, {"reference": "Patient/p3"}],
        "agent": [{"who": {"reference": "Practitioner/gp1"}}],
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
        "subject": {"reference": "Patient/p2"},
        "encounter": {"reference": "Encounter/e1"},
    },
]


@pytest.fixture
async def service(storage: Storage) -> FhirService:
    return await loaded_service(storage, RESOURCES)


async def get(
    svc: FhirService, path: str, *query: tuple[str, str], strict: bool = False
) -> dict[str, Any]:
    headers = {"prefer": "handling=strict"} if strict else {}
    response = await svc.handle(Request("GET", path, tuple(query), headers=headers, context=SYSTEM))
    assert response.status == 200
    body = response.body
    assert body is not None
    return orjson.loads(body) if isinstance(body, bytes) else body


def entries(bundle: dict[str, Any], mode: str) -> list[str]:
    return sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    )


async def test_include_adds_the_referenced_resources_once(service: FhirService) -> None:
    found = await get(
        service, "Observation", ("code", "8867-4"), ("_include", "Observation:subject")
    )
    assert entries(found, "match") == ["Observation/o1", "Observation/o2", "Observation/o4"]
    # o4's subject is Group/g1, which does not exist: nothing to include for it
    assert entries(found, "include") == ["Patient/p1"]
    self_link = next(link["url"] for link in found["link"] if link["relation"] == "self")
    assert "_include=Observation%3Asubject" in self_link


async def test_include_with_a_target_type_and_several_includes(service: FhirService) -> None:
    found = await get(service, "Observation", ("_include", "Observation:performer:Practitioner"))
    assert entries(found, "include") == ["Practitioner/gp1"]  # not Patient/p1 (o4)
    found = await get(
        service,
        "Observation",
        ("_include", "Observation:performer"),
        ("_include", "Observation:subject:Patient"),
    )
    assert entries(found, "include") == ["Patient/p1", "Patient/p2", "Practitioner/gp1"]


async def test_include_wildcards(service: FhirService) -> None:
    found = await get(service, "Patient", ("_id", "p1"), ("_include", "Patient:*"))
    assert entries(found, "include") == ["Organization/org1", "Practitioner/gp1"]
    found = await get(service, "Provenance", ("_include", "*"))
    assert entries(found, "include") == ["Observation/o1", "Patient/p3", "Practitioner/gp1"]


async def test_a_match_is_never_included_again(service: FhirService) -> None:
    found = await get(service, "Patient", ("_include", "Patient:link"))
    assert entries(found, "match") == ["Patient/p1", "Patient/p2", "Patient/p3"]
    assert entries(found, "include") == []


async def test_revinclude(service: FhirService) -> None:
    found = await get(
        service,
        "Patient",
        ("_id", "p1,p3"),
        ("_revinclude", "Observation:subject"),
        ("_revinclude", "Provenance:target"),
    )
    assert entries(found, "match") == ["Patient/p1", "Patient/p3"]
    assert entries(found, "include") == ["Observation/o1", "Observation/o2", "Provenance/prov1"]
    found = await get(
        service, "Observation", ("_id", "o2,o3"), ("_revinclude", "Provenance:target")
    )
    assert entries(found, "include") == []  # prov1 targets o1 only
    found = await get(service, "Practitioner", ("_revinclude", "Observation:*"))
    assert entries(found, "include") == ["Observation/o1"]


async def test_iterate_follows_what_was_included(service: FhirService) -> None:
    without = await get(
        service,
        "Observation",
        ("_id", "o2"),
        ("_include", "Observation:subject"),
        ("_include", "Patient:general-practitioner"),
    )
    assert entries(without, "include") == ["Patient/p1"]  # the second applies to matches only
    found = await get(
        service,
        "Observation",
        ("_id", "o2"),
        ("_include", "Observation:subject"),
        ("_include:iterate", "Patient:general-practitioner"),
        ("_include:iterate", "Patient:organization"),
    )
    assert entries(found, "include") == ["Organization/org1", "Patient/p1", "Practitioner/gp1"]
    # reverse then forward: Conditions of p2, then their encounters
    found = await get(
        service,
        "Patient",
        ("_id", "p2"),
        ("_revinclude", "Condition:subject"),
        ("_include:iterate", "Condition:encounter"),
    )
    assert entries(found, "include") == ["Condition/c1", "Encounter/e1"]


async def test_include_errors(service: FhirService) -> None:
    lenient = await get(service, "Observation", ("_include", "Observation:nonsense"))
    assert entries(lenient, "include") == []
    assert any(e["search"]["mode"] == "outcome" for e in lenient["entry"])
    with pytest.raises(BadRequest, match="nonsense"):
        await get(service, "Observation", ("_include", "Observation:nonsense"), strict=True)
    for bad in (
        "Observation",
        "Nope:subject",
        "Observation:code",
        "Observation:subject:Medication",
        "a:b:c:d",
    ):
        with pytest.raises(BadRequest) as error:
            await get(service, "Observation", ("_include", bad))
        assert error.value.issues[0].expression == ("_include",)
    with pytest.raises(BadRequest, match="_revinclude"):
        await get(service, "Observation", ("_revinclude", "*"), strict=True)


class HideGpAndP3(AllowAll):
    """A policy under which Practitioner gp1 and Patient p3 do not exist for the caller."""

    def visible(self, ctx: AccessContext, rec: StoredResource) -> bool:
        return (rec.type, rec.id) not in {("Practitioner", "gp1"), ("Patient", "p3")}

    def restrict(self, ctx: AccessContext, query: SearchQuery) -> SearchQuery:
        if query.types == ("Patient",):
            return SearchQuery(
                query.types,
                (*query.clauses, (IdCondition(("p1", "p2")),)),
                query.sort,
                query.count,
                query.offset,
                query.total,
                query.page,
            )
        return query


async def test_includes_honour_the_access_policy(service: FhirService) -> None:
    service.policy = HideGpAndP3()
    found = await get(service, "Provenance", ("_include", "*"))
    assert entries(found, "include") == ["Observation/o1"]
    found = await get(
        service,
        "Observation",
        ("_id", "o3"),
        ("_include", "Observation:subject"),
        ("_include:iterate", "Patient:link"),
    )
    assert entries(found, "include") == ["Patient/p1", "Patient/p2"]


async def test_compartment_search(service: FhirService) -> None:
    found = await get(service, "Patient/p1/Observation")
    # subject or performer is Patient/p1
    assert entries(found, "match") == ["Observation/o1", "Observation/o2", "Observation/o4"]
    found = await get(service, "Patient/p1/Observation", ("performer", "Practitioner/gp1"))
    assert entries(found, "match") == ["Observation/o1"]
    found = await get(service, "Patient/p2/Observation")
    assert entries(found, "match") == ["Observation/o3"]
    found = await get(service, "Patient/p1/Patient")  # itself, and p2 through link
    assert entries(found, "match") == ["Patient/p1", "Patient/p2"]
    found = await get(service, "Encounter/e1/Condition")
    assert entries(found, "match") == ["Condition/c1"]
    found = await get(service, "Patient/p3/Provenance")  # a Provenance's patient is its target
    assert entries(found, "match") == ["Provenance/prov1"]
    assert (await get(service, "Patient/p1/Observation", ("_summary", "count")))["total"] == 3


async def test_compartment_search_of_every_type(service: FhirService) -> None:
    # strays a one-search-of-every-type could pick up: p1 as requester (not a Patient
    # compartment parameter of MedicationRequest), and an Observation whose id is "p1"
    strays = [
        {
            "resourceType": "MedicationRequest",
            "id": "mr1",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "x"},
            "subject": {"reference": "Patient/p2"},
            "requester": {"reference": "Patient/p1"},
        },
        observation("p1", "Patient/p3"),
    ]
    for resource in strays:
        path = f"{resource['resourceType']}/{resource['id']}"
        response = await service.handle(Request("PUT", path, body=resource, context=SYSTEM))
        assert response.status == 201
    assert "MedicationRequest/mr1" in entries(await get(service, "Patient/p2/*"), "match")
    assert "Observation/p1" in entries(await get(service, "Patient/p3/*"), "match")
    found = await get(service, "Patient/p1/*")
    assert entries(found, "match") == [
        "Encounter/e1",
        "Observation/o1",
        "Observation/o2",
        "Observation/o4",
        "Patient/p1",
        "Patient/p2",
    ]
    found = await get(service, "Practitioner/gp1/*")
    assert entries(found, "match") == [
        "Observation/o1",
        "Patient/p1",
        "Practitioner/gp1",
        "Provenance/prov1",
    ]


async def test_compartment_errors(service: FhirService) -> None:
    with pytest.raises(NotFound, match="not a compartment"):
        await get(service, "Observation/o1/Patient")
    with pytest.raises(BadRequest, match="not in the Patient compartment"):
        await get(service, "Patient/p1/Organization")
    with pytest.raises(NotFound, match="Unknown resource type"):
        await get(service, "Patient/p1/Nonsense")


async def test_the_capability_statement_lists_includes(service: FhirService) -> None:
    statement = await get(service, "metadata")
    observation_ = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Observation")
    assert "Observation:subject" in observation_["searchInclude"]
    assert "*" in observation_["searchInclude"]
    assert "Provenance:target" in observation_["searchRevInclude"]


LOCATIONS: list[dict[str, Any]] = [  # hospital > ward > room; a clinic elsewhere
    {"resourceType": "Location", "id": "hospital"},
    {"resourceType": "Location", "id": "ward", "partOf": {"reference": "Location/hospital"}},
    {"resourceType": "Location", "id": "room", "partOf": {"reference": "Location/ward"}},
    {"resourceType": "Location", "id": "clinic"},
]


def encounter(id: str, where: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": id,
        "status": "finished",
        "class": {"code": "AMB"},
        "location": [{"location": {"reference": where}}],
    }


async def test_reference_below_and_above_follow_the_hierarchy(service: FhirService) -> None:
    """https://hl7.org/fhir/R4/search.html#reference: `:below` matches the location and
    everything that is part of it, at any depth; `:above` the location and what it is part of."""
    visits = [
        encounter("e-h", "Location/hospital"),
        encounter("e-w", "Location/ward"),
        encounter("e-r", "Location/room"),
        encounter("e-c", "Location/clinic"),
    ]
    for resource in [*LOCATIONS, *visits]:
        path = f"{resource['resourceType']}/{resource['id']}"
        response = await service.handle(Request("PUT", path, body=resource, context=SYSTEM))
        assert response.status == 201

    async def found(*query: tuple[str, str]) -> list[str]:
        bundle = await get(service, "Encounter", *query, strict=True)
        return [ref.split("/")[1] for ref in entries(bundle, "match")]

    assert await found(("location:below", "Location/hospital")) == ["e-h", "e-r", "e-w"]
    assert await found(("location:below", "ward")) == ["e-r", "e-w"]
    assert await found(("location:below", "Location/room")) == ["e-r"]
    assert await found(("location:above", "Location/room")) == ["e-h", "e-r", "e-w"]
    assert await found(("location:above", "Location/hospital")) == ["e-h"]
    assert await found(("location:below", "Location/clinic")) == ["e-c"]
    # the hierarchy's own parameter: the locations below the hospital
    bundle = await get(service, "Location", ("partof:below", "Location/hospital"), strict=True)
    assert entries(bundle, "match") == ["Location/room", "Location/ward"]
    with pytest.raises(BadRequest, match="location:below"):
        await get(service, "Encounter", ("location:below", "http://elsewhere/x"))
    with pytest.raises(BadRequest, match="below"):  # Patient has no hierarchy
        await get(service, "Observation", ("subject:below", "Patient/p1"), strict=True)


async def test_include_follows_canonical_references(service: FhirService) -> None:
    """`QuestionnaireResponse.questionnaire` is a canonical: the Questionnaire whose `url`
    it is comes in; `|version` and unknown canonicals do no harm."""
    resources = [
        {
            "resourceType": "Questionnaire",
            "id": "q1",
            "status": "active",
            "url": "http://example.org/Questionnaire/intake",
        },
        {
            "resourceType": "Questionnaire",
            "id": "q2",
            "status": "active",
            "url": "http://example.org/Questionnaire/other",
        },
        {
            "resourceType": "QuestionnaireResponse",
            "id": "qr1",
            "status": "completed",
            "questionnaire": "http://example.org/Questionnaire/intake|2.0",
        },
        {
            "resourceType": "QuestionnaireResponse",
            "id": "qr2",
            "status": "completed",
            "questionnaire": "http://example.org/Questionnaire/unknown",
        },
    ]
    for resource in resources:
        path = f"{resource['resourceType']}/{resource['id']}"
        response = await service.handle(Request("PUT", path, body=resource, context=SYSTEM))
        assert response.status == 201
    found = await get(
        service,
        "QuestionnaireResponse",
        ("_include", "QuestionnaireResponse:questionnaire"),
        strict=True,
    )
    assert entries(found, "match") == ["QuestionnaireResponse/qr1", "QuestionnaireResponse/qr2"]
    assert entries(found, "include") == ["Questionnaire/q1"]
