"""batch and transaction bundles over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.e2e.helpers import JSON, observation, patient, unique


def post_bundle(client: httpx.Client, bundle: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post("", content=orjson.dumps(bundle), headers={"Content-Type": JSON, **headers})


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def test_transaction_rewrites_urn_uuid_references(client: httpx.Client) -> None:
    mrn = unique()
    bundle = transaction(
        {
            "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
            "resource": patient(mrn),
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
            "resource": observation("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"),
            "request": {"method": "POST", "url": "Observation"},
        },
    )
    response = post_bundle(client, bundle)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    patient_loc, obs_loc = (e["response"]["location"] for e in result["entry"])
    pid = patient_loc.split("/Patient/")[1].split("/")[0]
    obs_id = obs_loc.split("/Observation/")[1].split("/")[0]
    obs = client.get(f"/Observation/{obs_id}").json()
    assert obs["subject"]["reference"] == f"Patient/{pid}"
    assert client.get("/Observation", params={"subject": f"Patient/{pid}"}).json()["total"] == 1


def test_transaction_is_all_or_nothing(client: httpx.Client) -> None:
    mrn = unique()
    bundle = transaction(
        {"resource": patient(mrn), "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": {"resourceType": "Observation", "status": "not-a-status"},
            "request": {"method": "POST", "url": "Observation"},
        },
    )
    response = post_bundle(client, bundle)
    assert response.status_code == 400
    assert "Bundle.entry[1]" in response.json()["issue"][0]["diagnostics"]
    search = client.get("/Patient", params={"identifier": f"http://hospital.example/mrn|{mrn}"})
    assert search.json()["total"] == 0


def test_transaction_conditional_create_and_conditional_reference(client: httpx.Client) -> None:
    mrn = unique()
    first = client.post(
        "/Patient", content=orjson.dumps(patient(mrn)), headers={"Content-Type": JSON}
    ).json()
    criteria = f"identifier=http://hospital.example/mrn|{mrn}"
    bundle = transaction(
        {
            "fullUrl": "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001",
            "resource": patient(mrn),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": criteria},
        },
        {
            "resource": observation(f"Patient?{criteria}"),
            "request": {"method": "POST", "url": "Observation"},
        },
        {
            "resource": observation("urn:uuid:aaaaaaaa-0000-4000-8000-000000000001", code="8310-5"),
            "request": {"method": "POST", "url": "Observation"},
        },
    )
    result = post_bundle(client, bundle).json()
    assert [e["response"]["status"] for e in result["entry"]] == [
        "200 OK",
        "201 Created",
        "201 Created",
    ]
    found = client.get("/Observation", params={"subject": f"Patient/{first['id']}"}).json()
    assert found["total"] == 2


def test_transaction_processing_order(client: httpx.Client) -> None:
    old = client.post(
        "/Patient", content=orjson.dumps(patient(unique())), headers={"Content-Type": JSON}
    ).json()
    mrn = unique()
    bundle = transaction(
        {
            "request": {
                "method": "GET",
                "url": f"Patient?identifier=http://hospital.example/mrn|{mrn}",
            }
        },
        {"resource": patient(mrn), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": f"Patient/{old['id']}"}},
    )
    result = post_bundle(client, bundle).json()
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["200 OK", "201 Created", "204 No Content"]
    assert result["entry"][0]["resource"]["total"] == 1  # the GET ran after the POST
    assert client.get(f"/Patient/{old['id']}").status_code == 410


def test_batch_entries_fail_independently(client: httpx.Client) -> None:
    mrn = unique()
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient(mrn), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": f"Patient/{unique()}"}},
            {
                "resource": {"resourceType": "Patient", "gender": 12},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    result = post_bundle(client, bundle).json()
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses[0] == "201 Created"
    assert statuses[1].startswith("404")
    assert statuses[2].startswith("400")
    assert result["entry"][2]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    search = client.get("/Patient", params={"identifier": f"http://hospital.example/mrn|{mrn}"})
    assert search.json()["total"] == 1


def test_bundle_of_other_type_is_rejected(client: httpx.Client) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": []}
    assert post_bundle(client, bundle).status_code == 400


def test_ten_thousand_entry_transaction(client: httpx.Client) -> None:
    tag = unique()
    entries = []
    for n in range(5000):
        urn = f"urn:uuid:{tag}-{n}"
        entries.append(
            {
                "fullUrl": urn,
                "resource": patient(f"{tag}-{n}"),
                "request": {"method": "POST", "url": "Patient"},
            }
        )
        entries.append(
            {"resource": observation(urn), "request": {"method": "POST", "url": "Observation"}}
        )
    response = post_bundle(client, transaction(*entries))
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["entry"]) == 10_000
    found = client.get(
        "/Patient",
        params={"identifier": f"http://hospital.example/mrn|{tag}-4999", "_summary": "count"},
    )
    assert found.json()["total"] == 1
