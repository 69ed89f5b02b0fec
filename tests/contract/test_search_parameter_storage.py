"""Valid SearchParameters are stored; only those meant to be parameters are registered, and
the R4 core parameters cannot be shadowed by a stored one (on every engine).

https://hl7.org/fhir/R4/searchparameter.html: `expression` is 0..1, codes such as `_id` are
the spec's own; the official definitions of the core parameters are resources like others.
"""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import Unprocessable
from fhir_server.storage.base import Storage
from tests.contract.test_custom_params import call, make_service

MRN = "http://hospital.example/mrn"


def search_parameter(id: str, **parts: Any) -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "id": id,
        "status": "active",
        "url": f"http://example.org/fhir/SearchParameter/{id}",
        "name": id,
        "description": "test",
        "base": ["Patient"],
        "type": "token",
        **parts,
    }


async def ids(svc: Any, query: tuple[tuple[str, str], ...]) -> set[str]:
    found = await call(svc, "GET", "Patient", query=query, headers={"prefer": "handling=strict"})
    return {e["resource"]["id"] for e in found.get("entry", [])}


@pytest.mark.parametrize(
    "resource",
    [
        search_parameter("resource-id", code="_id", base=["Resource"], expression="Resource.id"),
        search_parameter(
            "text", code="_text", base=["DomainResource"], type="string", status="draft"
        ),
        search_parameter(
            "last-updated",
            code="_lastUpdated",
            base=["Resource"],
            type="date",
            expression="Resource.meta.lastUpdated",
        ),
        search_parameter("age", code="age", type="number", status="draft"),  # no expression
        search_parameter("born", code="born", type="date", status="active"),  # no expression
    ],
    ids=lambda r: r["id"],
)
async def test_valid_search_parameters_are_stored_without_being_registered(
    storage: Storage, resource: dict[str, Any]
) -> None:
    svc = await make_service(storage)
    before = svc.registry.generation
    stored = await call(svc, "PUT", f"SearchParameter/{resource['id']}", resource)
    assert stored["code"] == resource["code"]
    assert svc.registry.generation == before  # nothing registered or replaced
    made = (await call(svc, "POST", "Patient", {"resourceType": "Patient"}))["id"]
    assert await ids(svc, (("_id", made),)) == {made}  # the core `_id` is untouched


@pytest.mark.parametrize(
    "redefinition",
    [
        search_parameter(
            "Patient-identifier",
            code="identifier",
            expression="Patient.name.family",
            url="http://hl7.org/fhir/SearchParameter/Patient-identifier",
        ),
        search_parameter("my-identifier", code="identifier", expression="Patient.name.family"),
    ],
    ids=["core-url", "core-code"],
)
async def test_the_core_identifier_cannot_be_shadowed(
    storage: Storage, redefinition: dict[str, Any]
) -> None:
    svc = await make_service(storage)
    await call(svc, "PUT", f"SearchParameter/{redefinition['id']}", redefinition)
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": MRN, "value": "42"}],
        "name": [{"family": "Doe"}],
    }
    criteria = {"if-none-exist": f"identifier={MRN}|42"}
    first = await call(svc, "POST", "Patient", body, headers=criteria)
    second = await call(svc, "POST", "Patient", body, headers=criteria)
    assert second["id"] == first["id"]  # If-None-Exist found it: no duplicate
    assert await ids(svc, (("identifier", f"{MRN}|42"),)) == {first["id"]}
    assert await ids(svc, (("identifier", "Doe"),)) == set()


async def test_a_registrable_parameter_that_cannot_work_is_a_422(storage: Storage) -> None:
    svc = await make_service(storage)
    bad = search_parameter("bad", code="bad-expression", expression="Patient.name.where(")
    with pytest.raises(Unprocessable, match=r"SearchParameter\.expression") as caught:
        await call(svc, "PUT", "SearchParameter/bad", bad)
    assert caught.value.status == 422
    draft = bad | {"status": "draft", "expression": "Patient.name.family"}
    await call(svc, "PUT", "SearchParameter/bad", draft)  # usable: stored and registered
    assert svc.registry.param("Patient", "bad-expression") is not None
