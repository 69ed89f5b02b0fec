"""Search results on every engine: `_sort`, keyset paging links, `_total`, `_contained`.

Expected orders are written by hand from https://hl7.org/fhir/R4/search.html#sort: the
lowest value ascending, the highest descending, resources without a value last, then
insertion order.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from fhir_server.context import SYSTEM
from fhir_server.errors import BadRequest
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage


@pytest.fixture
def service(storage: Storage) -> FhirService:
    return FhirService(storage, base_url="http://test/fhir")


async def put(svc: FhirService, resource: dict[str, Any]) -> None:
    path = f"{resource['resourceType']}/{resource['id']}"
    response = await svc.handle(Request("PUT", path, body=resource, context=SYSTEM))
    assert response.status in (200, 201)


async def search(
    svc: FhirService, path: str, *query: tuple[str, str], **headers: str
) -> dict[str, Any]:
    response = await svc.handle(Request("GET", path, tuple(query), headers=headers, context=SYSTEM))
    body = response.body
    assert body is not None
    return orjson.loads(body) if isinstance(body, bytes) else body


def ids(bundle: dict[str, Any]) -> list[str]:
    return [
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == "match"
    ]


def link(bundle: dict[str, Any], relation: str) -> list[tuple[str, str]] | None:
    for found in bundle.get("link", []):
        if found["relation"] == relation:
            return parse_qsl(urlsplit(found["url"]).query)
    return None


def followed(bundle: dict[str, Any], relation: str) -> list[tuple[str, str]]:
    """The query of the `relation` link, which the bundle must have."""
    query = link(bundle, relation)
    assert query is not None, f"no {relation} link"
    return query


def person(
    id: str, families: list[str], birth: str | None = None, gender: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "id": id,
        "name": [{"family": f} for f in families],
    }
    if birth:
        body["birthDate"] = birth
    if gender:
        body["gender"] = gender
    return body


def obs(id: str, subject: str | None, value: float | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    }
    if subject:
        body["subject"] = {"reference": subject}
    if value is not None:
        body["valueQuantity"] = {
            "value": value,
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        }
    return body


@pytest.fixture
async def people(service: FhirService) -> FhirService:
    # Inserted in this order: the tiebreak.
    await put(service, person("p1", ["Miller"], "1990-05-01", "male"))
    await put(service, person("p2", ["Adams", "Young"], None, "female"))
    await put(service, person("p3", ["Baker"], "1970", "female"))
    await put(service, person("p4", ["Zimmer", "Clark"], "1985-01-01"))
    await put(service, person("p5", ["miller"], "1990-05-01", "male"))
    return service


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("birthdate", ["p3", "p4", "p1", "p5", "p2"]),  # date low bound; missing last
        ("-birthdate", ["p1", "p5", "p4", "p3", "p2"]),  # ties keep insertion order
        ("name", ["p2", "p3", "p4", "p1", "p5"]),  # lowest of several: Adams, Baker, Clark
        ("-name", ["p4", "p2", "p1", "p5", "p3"]),  # highest: Zimmer, Young, Miller, Baker
        ("gender", ["p2", "p3", "p1", "p5", "p4"]),  # token code; p4 has none
        ("-gender,name", ["p1", "p5", "p2", "p3", "p4"]),  # two keys
        ("birthdate,-_id", ["p3", "p4", "p5", "p1", "p2"]),
        ("-_id", ["p5", "p4", "p3", "p2", "p1"]),
    ],
)
async def test_sort_by_parameter(people: FhirService, sort: str, expected: list[str]) -> None:
    assert ids(await search(people, "Patient", ("_sort", sort))) == expected


async def test_sort_by_quantity_and_reference(service: FhirService) -> None:
    await put(service, obs("o1", "Patient/b", 80))
    await put(service, obs("o2", None, 60.5))
    await put(service, obs("o3", "Patient/a", None))
    await put(service, obs("o4", "Patient/c", 100))
    assert ids(await search(service, "Observation", ("_sort", "value-quantity"))) == [
        "o2",
        "o1",
        "o4",
        "o3",
    ]
    assert ids(await search(service, "Observation", ("_sort", "-value-quantity"))) == [
        "o4",
        "o1",
        "o2",
        "o3",
    ]
    assert ids(await search(service, "Observation", ("_sort", "subject"))) == [
        "o3",
        "o1",
        "o4",
        "o2",
    ]
    assert ids(await search(service, "Observation", ("_sort", "-subject"))) == [
        "o4",
        "o1",
        "o3",
        "o2",
    ]


async def test_sort_by_uri(service: FhirService) -> None:
    for id, url in (("v1", "http://b.org/vs"), ("v2", None), ("v3", "http://a.org/vs")):
        body = {"resourceType": "ValueSet", "id": id, "status": "active"}
        if url:
            body["url"] = url
        await put(service, body)
    assert ids(await search(service, "ValueSet", ("_sort", "url"))) == ["v3", "v1", "v2"]
    assert ids(await search(service, "ValueSet", ("_sort", "-url"))) == ["v1", "v3", "v2"]


async def follow(svc: FhirService, first: dict[str, Any], between=None) -> list[str]:
    """Every id by following `next` links; `between(n)` runs before fetching page n+1."""
    seen, bundle, n = ids(first), first, 0
    while (params := link(bundle, "next")) is not None:
        if between is not None:
            await between(n)
        n += 1
        bundle = await search(svc, "Patient", *params)
        seen += ids(bundle)
    return seen


@pytest.mark.parametrize("sort", ["name", "-birthdate", "_id", "-_lastUpdated,_id", None])
async def test_paging_is_stable_while_resources_are_created(
    people: FhirService, sort: str | None
) -> None:
    query = [("_count", "2")] + ([("_sort", sort)] if sort else [])
    expected = ids(await search(people, "Patient", *query, ("_count", "100")))
    first = await search(people, "Patient", *query)
    assert link(first, "previous") is None and link(first, "first") is not None

    async def create(n: int) -> None:  # ahead of, inside and after the pages read so far
        if n >= 2:  # (in insertion order they would come after, page after page)
            return
        await put(people, person(f"new{n}a", ["Aaron"], "2020-01-01", "female"))
        await put(people, person(f"new{n}z", ["Zz"], "1900-01-01"))

    seen = await follow(people, first, create)
    old = [i for i in seen if not i.startswith("new")]
    assert old == expected  # no duplicates, no skips, same order
    assert len(seen) == len(set(seen))


async def test_previous_link_goes_back(people: FhirService) -> None:
    first = await search(people, "Patient", ("_sort", "name"), ("_count", "2"))
    second = await search(people, "Patient", *followed(first, "next"))
    third = await search(people, "Patient", *followed(second, "next"))
    assert ids(third) == ["p5"] and link(third, "next") is None
    back = await search(people, "Patient", *followed(third, "previous"))
    assert ids(back) == ids(second) == ["p4", "p1"]
    assert ids(await search(people, "Patient", *followed(back, "previous"))) == ids(first)
    self_params = dict(link(second, "self") or [])
    assert "_page" in self_params and self_params["_sort"] == "name"


async def test_a_page_token_is_bound_to_its_sort(people: FhirService) -> None:
    first = await search(people, "Patient", ("_sort", "name"), ("_count", "2"))
    token = dict(link(first, "next") or [])["_page"]
    with pytest.raises(BadRequest):
        await search(people, "Patient", ("_sort", "birthdate"), ("_page", token))
    with pytest.raises(BadRequest):
        await search(people, "Patient", ("_page", "not-a-token"))


async def test_count_and_total_modes(people: FhirService) -> None:
    accurate = await search(people, "Patient", ("_count", "2"))
    assert accurate["total"] == 5 and len(ids(accurate)) == 2
    assert "total" not in await search(people, "Patient", ("_total", "none"))
    assert (await search(people, "Patient", ("_total", "estimate")))["total"] == 5
    none = await search(people, "Patient", ("_count", "0"))
    assert none["total"] == 5 and ids(none) == [] and link(none, "next") is None
    counted = await search(people, "Patient", ("_summary", "count"), ("gender", "male"))
    assert counted["total"] == 2 and ids(counted) == []
    capped = await search(people, "Patient", ("_count", "100000"))
    assert dict(link(capped, "self") or [])["_count"] == str(people.max_count)


async def test_contained_only_false(people: FhirService) -> None:
    lenient = await search(people, "Patient", ("_contained", "true"), ("gender", "male"))
    assert ids(lenient) == ["p1", "p5"]
    assert "_contained" not in dict(link(lenient, "self") or [])
    fine = await search(
        people,
        "Patient",
        ("_contained", "false"),
        ("_containedType", "container"),
        prefer="handling=strict",
    )
    assert len(ids(fine)) == 5
    for name, value in (("_contained", "both"), ("_containedType", "contained")):
        with pytest.raises(BadRequest):
            await search(people, "Patient", (name, value), prefer="handling=strict")


async def test_system_search_sorts_by_common_parameters(people: FhirService) -> None:
    await put(people, obs("o1", "Patient/p1", 1))
    found = await search(people, "", ("_type", "Patient,Observation"), ("_sort", "-_id"))
    assert ids(found) == ["p5", "p4", "p3", "p2", "p1", "o1"]
    by_time = await search(
        people, "", ("_type", "Patient,Observation"), ("_sort", "-_lastUpdated"), ("_count", "1")
    )
    assert ids(by_time) == ["o1"] and by_time["total"] == 6
