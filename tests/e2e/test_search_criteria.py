"""Chains, `_has`, composites and `_filter` over real HTTP, GET and POST `_search`."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.helpers import unique

LOINC = "http://loinc.org"


def _put(client: httpx.Client, resource: dict[str, Any]) -> None:
    response = client.put(
        f"/{resource['resourceType']}/{resource['id']}",
        json=resource,
        headers={"Content-Type": "application/fhir+json"},
    )
    assert response.status_code in (200, 201), response.text


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(
        e["resource"]["id"]
        for e in response.json().get("entry", [])
        if e["search"]["mode"] == "match"
    )


def test_chains_has_composites_and_filter(client: httpx.Client) -> None:
    tag = unique()
    family = f"Chain{tag}"
    _put(
        client,
        {"resourceType": "Practitioner", "id": f"gp-{tag}", "name": [{"family": f"Gp{tag}"}]},
    )
    _put(
        client,
        {
            "resourceType": "Patient",
            "id": f"p-{tag}",
            "name": [{"family": family}],
            "generalPractitioner": [{"reference": f"Practitioner/gp-{tag}"}],
        },
    )
    _put(
        client,
        {
            "resourceType": "Observation",
            "id": f"o-{tag}",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "subject": {"reference": f"Patient/p-{tag}"},
            "component": [
                {
                    "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                    "valueQuantity": {
                        "value": 150,
                        "system": "http://unitsofmeasure.org",
                        "code": "mm[Hg]",
                    },
                }
            ],
        },
    )
    strict = {"Prefer": "handling=strict"}

    chain = client.get(
        "/Observation",
        headers=strict,
        params={"subject:Patient.general-practitioner.name": f"gp{tag}"},
    )
    assert _ids(chain) == [f"o-{tag}"]
    has = client.get(
        "/Practitioner",
        headers=strict,
        params={
            "_has:Patient:general-practitioner:_has:Observation:subject:code": "85354-9",
            "name": f"gp{tag}",
        },
    )
    assert _ids(has) == [f"gp-{tag}"]
    composite = client.post(
        "/Observation/_search",
        headers=strict,
        data={
            "component-code-value-quantity": f"{LOINC}|8480-6$gt140",
            "subject": f"Patient/p-{tag}",
        },
    )
    assert _ids(composite) == [f"o-{tag}"]
    filtered = client.get(
        "/Patient",
        headers=strict,
        params={"_filter": f'name eq "{family}" and general-practitioner pr true'},
    )
    assert _ids(filtered) == [f"p-{tag}"]
    assert "_filter=" in next(
        link["url"] for link in filtered.json()["link"] if link["relation"] == "self"
    )


def test_malformed_criteria_are_400s_naming_the_parameter(client: httpx.Client) -> None:
    for name, value in [
        ("subject:Patient.birthdate", "yesterday"),
        ("_filter", "name eq"),
        ("component-code-value-quantity", "8480-6"),
    ]:
        response = client.get("/Observation", params={name: value})
        assert response.status_code == 400, (name, response.text)
        issue = response.json()["issue"][0]
        assert issue["severity"] == "error"
        assert name in issue.get("expression", []) or name in issue["diagnostics"], issue
