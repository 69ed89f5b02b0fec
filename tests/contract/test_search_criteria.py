"""Chaining, reverse chaining, composite parameters, `near` and token `:text`, `:of-type`,
reference `:identifier`, on every engine. Expected ids are worked out by hand from the
FHIR R4 search page (https://hl7.org/fhir/R4/search.html) for the small data set below.

    gp1  Practitioner "House"           gp2 Practitioner "Wilson"
    p1   Patient "Smith",  GP gp1, MRN urn:mrn|1 (type MR), identifier NI 77
    p2   Patient "Jones",  GP gp2
    p3   Patient "Smithers", no GP
    o1   BP panel of p1 (85354-9), components systolic 8480-6 = 140, diastolic 8462-4 = 90
    o2   systolic 8480-6 = 120 of p2, performer gp1
    o3   glucose 2339-0 = 5.5 of p3, code text "Glucose [Moles/volume] in Blood"
    e1   Encounter of p1;  o1 in e1
    l1   Location at 42.25, -83.69;  l2 27.8 km north of it;  l3 across the antimeridian
    c1   Claim with patient given only as an identifier (urn:mrn|1)
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_server.context import SYSTEM, AccessContext, AllowAll
from fhir_server.errors import BadRequest
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.search.conditions import IdCondition, SearchQuery
from fhir_server.storage.base import Storage, StoredResource

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def qty(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}


def code(c: str, text: str | None = None) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": c}], **({"text": text} if text else {})}


DATA: list[dict[str, Any]] = [
    {"resourceType": "Practitioner", "id": "gp1", "name": [{"family": "House"}]},
    {"resourceType": "Practitioner", "id": "gp2", "name": [{"family": "Wilson"}]},
    {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Smith"}],
        "birthDate": "1970-05-01",
        "meta": {"profile": ["http://example.org/fhir/StructureDefinition/my-patient"]},
        "generalPractitioner": [{"reference": "Practitioner/gp1"}],
        "identifier": [
            {
                "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                "system": "urn:mrn",
                "value": "1",
            },
            {
                "type": {"coding": [{"system": V2_0203, "code": "NI"}], "text": "National id"},
                "system": "urn:ni",
                "value": "77",
            },
        ],
    },
    {
        "resourceType": "Patient",
        "id": "p2",
        "name": [{"family": "Jones"}],
        "birthDate": "1985",
        "generalPractitioner": [{"reference": "Practitioner/gp2"}],
    },
    {"resourceType": "Patient", "id": "p3", "name": [{"family": "Smithers"}]},
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": code("85354-9", "Blood pressure panel"),
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "component": [
            {"code": code("8480-6"), "valueQuantity": qty(140)},
            {"code": code("8462-4"), "valueQuantity": qty(90)},
        ],
    },
    {
        "resourceType": "Observation",
        "id": "o2",
        "status": "final",
        "code": code("8480-6"),
        "subject": {"reference": "Patient/p2"},
        "performer": [{"reference": "Practitioner/gp1"}],
        "valueQuantity": qty(120),
    },
    {
        "resourceType": "Observation",
        "id": "o3",
        "status": "final",
        "code": code("2339-0", "Glucose [Moles/volume] in Blood"),
        "subject": {"reference": "Patient/p3"},
        "valueQuantity": {"value": 5.5, "system": UCUM, "code": "mmol/L"},
    },
    {"resourceType": "Location", "id": "l1", "position": {"latitude": 42.25, "longitude": -83.69}},
    {"resourceType": "Location", "id": "l2", "position": {"latitude": 42.5, "longitude": -83.69}},
    {"resourceType": "Location", "id": "l3", "position": {"latitude": 0.0, "longitude": -179.95}},
    {
        "resourceType": "List",
        "id": "list1",
        "status": "current",
        "mode": "working",
        "entry": [
            {"item": {"reference": "Patient/p1"}},
            {"item": {"reference": "Patient/p3"}},
            {"item": {"reference": "Observation/o2"}},
        ],
    },
    {
        "resourceType": "Claim",
        "id": "c1",
        "status": "active",
        "use": "claim",
        "created": "2024-01-01",
        "type": {"coding": [{"code": "oral"}]},
        "provider": {"reference": "Practitioner/gp1"},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "x"}}],
        "patient": {"identifier": {"system": "urn:mrn", "value": "1"}},
    },
]


@pytest.fixture
async def service(storage: Storage) -> FhirService:
    svc = FhirService(storage, base_url="http://test/fhir")
    for resource in DATA:
        await svc.handle(
            Request(
                "PUT", f"{resource['resourceType']}/{resource['id']}", body=resource, context=SYSTEM
            )
        )
    return svc


async def ids(
    svc: FhirService, type: str, query: str, context: AccessContext = SYSTEM
) -> list[str]:
    params = tuple((name, value) for name, value in (p.split("=", 1) for p in query.split("&")))
    response = await svc.handle(
        Request(
            "GET",
            type,
            params,
            context=context,
            headers={"prefer": "handling=strict"},
        )
    )
    body = response.body
    data = orjson.loads(body) if isinstance(body, bytes) else body
    assert isinstance(data, dict)
    return sorted(e["resource"]["id"] for e in data.get("entry", []))


@pytest.mark.parametrize(
    ("type", "query", "expected"),
    [
        # chains: https://hl7.org/fhir/R4/search.html#chaining
        ("Observation", "subject:Patient.name=smith", ["o1", "o3"]),  # Smith, Smithers
        ("Observation", "subject.name=jones", ["o2"]),
        ("Observation", "subject:Patient.name:exact=Smith", ["o1"]),
        ("Observation", "subject:Patient.general-practitioner.name=house", ["o1"]),
        ("Observation", "subject:Patient.general-practitioner:Practitioner.name=wilson", ["o2"]),
        ("Observation", "encounter.subject.general-practitioner.name=house", ["o1"]),  # 3 levels
        ("Observation", "subject:Patient.name=smith,jones", ["o1", "o2", "o3"]),  # OR inside
        ("Observation", "subject:Patient.name=smith&subject:Patient.name=smithers", ["o3"]),
        ("Observation", "subject:Patient.name=nobody", []),
        ("Observation", "performer:Practitioner.name=house", ["o2"]),
        ("Observation", "subject:Patient._id=p2", ["o2"]),
        # reverse chaining: https://hl7.org/fhir/R4/search.html#has
        ("Patient", f"_has:Observation:patient:code={LOINC}|8480-6", ["p2"]),
        ("Patient", "_has:Observation:subject:code=85354-9,2339-0", ["p1", "p3"]),
        ("Patient", "_has:Observation:subject:code=nothing", []),
        (
            "Practitioner",
            "_has:Patient:general-practitioner:_has:Observation:subject:code=85354-9",
            ["gp1"],
        ),  # nested _has
        ("Practitioner", "_has:Observation:performer:subject:Patient.name=jones", ["gp1"]),
        ("Patient", "_has:Observation:subject:code=8480-6&name=jones", ["p2"]),
        # composite: components match within one element
        ("Observation", f"component-code-value-quantity={LOINC}|8480-6$gt130", ["o1"]),
        ("Observation", f"component-code-value-quantity={LOINC}|8462-4$gt130", []),  # 140 is
        # the systolic component's value, not the diastolic's
        ("Observation", "component-code-value-quantity=8462-4$le90", ["o1"]),
        ("Observation", "code-value-quantity=8480-6$lt130", ["o2"]),
        (
            "Observation",
            "code-value-quantity=8480-6$gt100|http://unitsofmeasure.org|mm[Hg]",
            ["o2"],
        ),
        ("Observation", "combo-code-value-quantity=8480-6$ge120", ["o1", "o2"]),
        ("Observation", "code-value-quantity=2339-0$5.5,8480-6$120", ["o2", "o3"]),
        ("Observation", "component-code-value-quantity:missing=false", ["o1"]),
        # near: https://hl7.org/fhir/R4/location.html#positional (l2 is 27.8 km from l1)
        ("Location", "near=42.25|-83.69|10|km", ["l1"]),
        ("Location", "near=42.25|-83.69|30|km", ["l1", "l2"]),
        ("Location", "near=42.25|-83.69|27000|m", ["l1"]),
        ("Location", "near=42.25|-83.69|20|[mi_i]", ["l1", "l2"]),  # 27.8 km = 17.3 miles
        ("Location", "near=0|179.95|20|km", ["l3"]),  # 11 km away, across the antimeridian
        # token :text, :of-type; reference :identifier, :[type]
        ("Observation", "code:text=blood", ["o1"]),  # starts with: not "Glucose ... Blood"
        ("Observation", "code:text=glucose [moles", ["o3"]),
        ("Patient", f"identifier:of-type={V2_0203}|MR|1", ["p1"]),
        ("Patient", f"identifier:of-type={V2_0203}|NI|1", []),
        ("Patient", "identifier:text=national", ["p1"]),
        ("Claim", "patient:identifier=urn:mrn|1", ["c1"]),
        ("Claim", "patient:identifier=urn:mrn|2", []),
        ("Observation", "subject:Patient=p1", ["o1"]),
        ("Observation", "performer:Practitioner=gp1", ["o2"]),
        # _filter: https://hl7.org/fhir/R4/search_filter.html
        ("Patient", "_filter=name eq Smith", ["p1"]),
        ("Patient", '_filter=name eq "Smith"', ["p1"]),
        ("Patient", "_filter=name sw smi", ["p1", "p3"]),
        ("Patient", "_filter=name co ITH", ["p1", "p3"]),
        ("Patient", "_filter=name sw smi and general-practitioner pr true", ["p1"]),
        ("Patient", "_filter=general-practitioner pr false", ["p3"]),
        ("Patient", "_filter=name eq Jones or name eq Smith", ["p1", "p2"]),
        ("Patient", "_filter=not (name sw smi)", ["p2"]),
        ("Patient", "_filter=(name sw smi or name sw jon) and not (_id eq p3)", ["p1", "p2"]),
        ("Patient", "_filter=name sw jon or name sw smi and _id eq p3", ["p2", "p3"]),  # and first
        ("Observation", f"_filter=code eq {LOINC}|8480-6", ["o2"]),
        ("Observation", "_filter=code ne 8480-6", ["o1", "o3"]),
        ("Observation", "_filter=value-quantity gt 100", ["o2"]),
        ("Observation", "_filter=value-quantity lt 100", ["o3"]),
        ("Observation", "_filter=subject.name sw jon", ["o2"]),
        ("Observation", "_filter=status eq final and not (code eq 85354-9)", ["o2", "o3"]),
        ("Observation", "_filter=subject re Patient/p3", ["o3"]),
        ("Observation", "_filter=not (subject.name sw smi) and code eq 8480-6", ["o2"]),
        ("Patient", "_filter=name sw smi&_filter=name sw smith", ["p1", "p3"]),
        ("Patient", "_filter=birthdate ge 1980", ["p2"]),
        ("Patient", "_filter=birthdate lt 1980", ["p1"]),
        ("Patient", "_filter=birthdate sa 1980", ["p2"]),
        ("Patient", "_filter=birthdate eb 1980", ["p1"]),
        ("Patient", "_filter=birthdate le 1970-05-01", ["p1"]),
        ("Patient", "_filter=birthdate po 1985-06", ["p2"]),  # the year 1985 overlaps June
        ("Patient", "_filter=birthdate eq 1970-05", ["p1"]),
        ("Patient", "_filter=birthdate ne 1970-05-01", ["p2"]),  # p3 has no birthdate
        ("Patient", "_filter=birthdate pr false", ["p3"]),
        ("Patient", '_filter=name eq "Smith" and (birthdate gt 1960 or _id eq p2)', ["p1"]),
        # _list: https://hl7.org/fhir/R4/search.html#list
        ("Patient", "_list=list1", ["p1", "p3"]),
        ("Observation", "_list=list1", ["o2"]),
        ("Patient", "_list=nolist", []),
        # token :not includes resources without the element; uri :below / :above
        ("Observation", "code:not=8480-6", ["o1", "o3"]),
        ("Observation", "performer:missing=true", ["o1", "o3"]),
        ("Patient", "general-practitioner:missing=true", ["p3"]),
        ("Patient", "birthdate:missing=false", ["p1", "p2"]),
        ("Patient", "_profile:below=http://example.org/fhir", ["p1"]),
        (
            "Patient",
            "_profile:above=http://example.org/fhir/StructureDefinition/my-patient/x",
            ["p1"],
        ),
        ("Patient", "_profile=http://example.org/fhir", []),
    ],
)
async def test_search(service: FhirService, type: str, query: str, expected: list[str]) -> None:
    assert await ids(service, type, query) == expected


@pytest.mark.parametrize(
    ("type", "query", "message"),
    [
        ("Observation", "subject:Practitioner.name=x", "not a target type"),
        ("Observation", "subject:Device.name=x", "No target type"),  # Device has no `name`
        ("Observation", "subject:Patient.nonsense=x", "nonsense"),
        ("Patient", "_has:Observation:code=x", r"_has:\[type\]"),
        ("Patient", "_has:Nothing:subject:code=x", "Unknown resource type"),
        ("Patient", "_has:Observation:status:code=x", "not a reference parameter"),
        ("Observation", "component-code-value-quantity=8480-6", "composite value"),
        ("Location", "near=north|south", "near value"),
        ("Location", "near=42|-83|10|parsec", "near value"),
        ("Patient", "identifier:of-type=MR|1", "of-type"),
        ("Observation", "subject:Patient.birthdate=not-a-date", "birthdate"),
        ("Patient", "_filter=name ew ith", "_filter: operator 'ew'"),
        ("Patient", "_filter=name eq", "_filter: the filter ends too early"),
        ("Patient", "_filter=(name eq x", "_filter: the filter ends too early"),
        ("Patient", "_filter=name eq x)", "_filter: unexpected"),
        ("Patient", "_filter=nonsense eq 1", "_filter: unknown search parameter"),
        ("Patient", "_filter=name xx 1", "_filter: unknown operator"),
        ("Patient", "_filter=name[use eq official].family eq x", "_filter: filters inside"),
        ("Patient", "_filter=birthdate gt 19x", "birthdate"),
    ],
)
async def test_bad_criteria_are_refused_with_the_parameter_named(
    service: FhirService, type: str, query: str, message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        await ids(service, type, query)


async def test_lenient_handling_ignores_a_chain_it_cannot_follow(service: FhirService) -> None:
    response = await service.handle(
        Request(
            "GET",
            "Observation",
            (("subject:Patient.nonsense", "x"), ("code", "8480-6")),
            context=SYSTEM,
        )
    )
    body = response.body
    data: Any = orjson.loads(body) if isinstance(body, bytes) else body
    found = sorted(e["resource"]["id"] for e in data["entry"] if e["search"]["mode"] == "match")
    assert found == ["o2"]
    assert "nonsense" not in next(
        link["url"] for link in data["link"] if link["relation"] == "self"
    )


class HideP1(AllowAll):
    """A policy that hides Patient p1 (as a patient-compartment policy would others)."""

    def visible(self, ctx: AccessContext, rec: StoredResource) -> bool:
        return not (rec.type == "Patient" and rec.id == "p1")

    def restrict(self, ctx: AccessContext, query: SearchQuery) -> SearchQuery:
        if "Patient" not in query.types:
            return query
        visible = IdCondition(("p2", "p3"))
        return SearchQuery(
            query.types,
            (*query.clauses, (visible,)),
            query.sort,
            query.count,
            query.offset,
            query.total,
        )


async def test_chains_and_has_do_not_see_through_the_access_policy(service: FhirService) -> None:
    service.policy = HideP1()
    assert await ids(service, "Observation", "subject:Patient.name=smith") == ["o3"]
    assert await ids(service, "Patient", "_has:Observation:subject:code=85354-9,2339-0") == ["p3"]
    assert (
        await ids(
            service,
            "Practitioner",
            "_has:Patient:general-practitioner:_has:Observation:subject:code=85354-9",
        )
        == []
    )
