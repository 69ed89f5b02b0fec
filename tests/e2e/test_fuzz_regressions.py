"""Inputs the fuzz test (test_fuzz.py) found to give a 5xx, each answered below 500 now."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.e2e.helpers import JSON, patient, unique


def post(client: httpx.Client, url: str, body: Any, **headers: str) -> httpx.Response:
    return client.post(url, content=orjson.dumps(body), headers={"Content-Type": JSON, **headers})


def issue(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    first: dict[str, Any] = body["issue"][0]
    return first


def test_transaction_entry_with_a_fullurl_that_is_not_a_string(client: httpx.Client) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": [None],
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    found = issue(post(client, "", bundle), 400)
    assert found["expression"] == ["Bundle.entry[0].fullUrl"]


def test_fhirpath_patch_that_repeats_a_computed_value_ends(client: httpx.Client) -> None:
    id = unique()
    client.put(
        f"/Patient/{id}", content=orjson.dumps(patient(id=id)), headers={"Content-Type": JSON}
    )
    patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "delete"},
                    {"name": "path", "valueString": "Patient.name.given.repeat($this + 'x')"},
                ],
            }
        ],
    }
    response = client.patch(
        f"/Patient/{id}", content=orjson.dumps(patch), headers={"Content-Type": JSON}
    )
    assert response.status_code in (400, 422), response.text
    assert client.get("/metadata").status_code == 200


def test_custom_parameter_that_repeats_a_computed_value_ends(client: httpx.Client) -> None:
    code = f"fuzz-repeat-{unique()}"
    param = {
        "resourceType": "SearchParameter",
        "url": f"http://example.org/sp/{code}",
        "name": "fuzzRepeat",
        "status": "active",
        "description": "repeat() of strings",
        "code": code,
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.given.repeat($this + 'x')",
    }
    created = post(client, "/SearchParameter", param)
    assert created.status_code == 201, created.text
    try:
        assert post(client, "/Patient", patient()).status_code == 201
        found = client.get("/Patient", params={code: "Janex"})
        assert found.status_code == 200, found.text
        assert found.json()["total"] >= 1
    finally:
        client.delete(created.headers["Location"].split("/_history/")[0])


def test_a_number_whose_exponent_is_beyond_a_double_is_searched(client: httpx.Client) -> None:
    """`1e-999999999` is a number a float holds (0.0); half a unit of its last digit was
    computed with `Decimal.scaleb`, which raised for that exponent (a 500)."""
    for params in (
        {"_filter": "value-quantity eq 1e-999999999"},
        {"value-quantity": "1e-999999999"},
        {"value-quantity": "ap0e999999999"},
        {"_filter": "value-quantity ne -1e-999999999"},
    ):
        response = client.get("/Observation", params={**params, "_summary": "count"})
        assert response.status_code == 200, (params, response.text)
    found = client.get("/RiskAssessment", params={"probability": "1e-999999999"})
    assert found.status_code == 200, found.text


def test_json_patch_with_a_deeply_nested_value(client: httpx.Client) -> None:
    id = unique()
    client.put(
        f"/Patient/{id}", content=orjson.dumps(patient(id=id)), headers={"Content-Type": JSON}
    )
    for depth in (300, 480, 600, 900):  # 480 and more gave a 500 (deepcopy's RecursionError)
        value = '{"a":' * depth + "{}" + "}" * depth  # deeper than orjson writes
        body = f'[{{"op":"add","path":"/extension","value":{value}}}]'
        response = client.patch(
            f"/Patient/{id}",
            content=body.encode(),
            headers={"Content-Type": "application/json-patch+json"},
        )
        found = issue(response, 400)["diagnostics"]  # too deep, or an extension that is none
        assert "nested too deeply" in found or depth < 600, found
    assert client.get(f"/Patient/{id}").json()["id"] == id
