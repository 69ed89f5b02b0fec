"""PATCH (JSON Patch, FHIRPath Patch), history and the first slice of search, over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.e2e.helpers import JSON, observation, patient, unique


def created(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(
        f"/{body['resourceType']}", content=orjson.dumps(body), headers={"Content-Type": JSON}
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_json_patch(client: httpx.Client) -> None:
    pid = created(client, patient(unique()))["id"]
    ops = [
        {"op": "replace", "path": "/gender", "value": "male"},
        {"op": "add", "path": "/name/0/given/-", "value": "Ann"},
    ]
    response = client.patch(
        f"/Patient/{pid}",
        content=orjson.dumps(ops),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["gender"] == "male" and body["name"][0]["given"] == ["Jane", "Ann"]
    assert body["meta"]["versionId"] == "2"


def test_json_patch_failed_test_op_changes_nothing(client: httpx.Client) -> None:
    pid = created(client, patient(unique()))["id"]
    ops = [
        {"op": "test", "path": "/gender", "value": "male"},
        {"op": "replace", "path": "/gender", "value": "other"},
    ]
    response = client.patch(
        f"/Patient/{pid}",
        content=orjson.dumps(ops),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code in (400, 422)
    assert client.get(f"/Patient/{pid}").json()["gender"] == "female"


def test_patch_that_makes_resource_invalid_is_refused(client: httpx.Client) -> None:
    pid = created(client, patient(unique()))["id"]
    ops = [{"op": "replace", "path": "/gender", "value": 42}]
    response = client.patch(
        f"/Patient/{pid}",
        content=orjson.dumps(ops),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 400


def test_fhirpath_patch(client: httpx.Client) -> None:
    pid = created(client, patient(unique()))["id"]
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.birthDate"},
                    {"name": "value", "valueDate": "1999-09-09"},
                ],
            },
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "active"},
                    {"name": "value", "valueBoolean": True},
                ],
            },
        ],
    }
    response = client.patch(
        f"/Patient/{pid}", content=orjson.dumps(parameters), headers={"Content-Type": JSON}
    )
    assert response.status_code == 200, response.text
    assert response.json()["birthDate"] == "1999-09-09"
    assert response.json()["active"] is True


def test_history_levels_since_and_paging(client: httpx.Client) -> None:
    first = created(client, patient(unique()))
    since = first["meta"]["lastUpdated"]
    pid = first["id"]
    for gender in ("male", "other", "unknown"):
        client.put(
            f"/Patient/{pid}",
            content=orjson.dumps(first | {"gender": gender}),
            headers={"Content-Type": JSON},
        )
    instance = client.get(f"/Patient/{pid}/_history").json()
    assert instance["type"] == "history" and instance["total"] == 4
    assert [e["resource"]["meta"]["versionId"] for e in instance["entry"]] == ["4", "3", "2", "1"]
    page = client.get(f"/Patient/{pid}/_history", params={"_count": 2}).json()
    assert len(page["entry"]) == 2
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    second = httpx.get(next_url, headers={"Accept": JSON}).json()
    assert [e["resource"]["meta"]["versionId"] for e in second["entry"]] == ["2", "1"]
    typed = client.get("/Patient/_history", params={"_since": since}).json()
    assert {e["resource"]["id"] for e in typed["entry"]} >= {pid}
    system = client.get("/_history", params={"_since": since, "_count": 1}).json()
    assert len(system["entry"]) == 1
    at = client.get(f"/Patient/{pid}/_history", params={"_at": since}).json()
    assert [e["resource"]["meta"]["versionId"] for e in at["entry"]] == ["1"]


def test_search_token_reference_id_and_paging(client: httpx.Client, base: str) -> None:
    mrn = unique()
    pid = created(client, patient(mrn))["id"]
    for value in range(5):
        created(client, observation(f"Patient/{pid}", value=60 + value))
    by_identifier = client.get(
        "/Patient", params={"identifier": f"http://hospital.example/mrn|{mrn}"}
    )
    bundle = by_identifier.json()
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    assert bundle["entry"][0]["fullUrl"] == f"{base}/Patient/{pid}"
    assert bundle["entry"][0]["search"]["mode"] == "match"
    assert client.get("/Patient", params={"identifier": mrn}).json()["total"] == 1
    assert client.get("/Patient", params={"_id": pid}).json()["total"] == 1
    obs = client.get("/Observation", params={"subject": f"Patient/{pid}", "_count": 2}).json()
    assert obs["total"] == 5 and len(obs["entry"]) == 2
    seen = {e["resource"]["id"] for e in obs["entry"]}
    while any(link["relation"] == "next" for link in obs["link"]):
        url = next(link["url"] for link in obs["link"] if link["relation"] == "next")
        obs = httpx.get(url, headers={"Accept": JSON}).json()
        seen |= {e["resource"]["id"] for e in obs["entry"]}
    assert len(seen) == 5
    assert client.get("/Observation", params={"patient": pid}).json()["total"] == 5


def test_search_last_updated_and_summary_count(client: httpx.Client) -> None:
    mrn = unique()
    body = created(client, patient(mrn))
    stamp = body["meta"]["lastUpdated"]
    ge = client.get("/Patient", params={"_lastUpdated": f"ge{stamp}", "identifier": mrn}).json()
    assert ge["total"] == 1
    lt = client.get("/Patient", params={"_lastUpdated": f"lt{stamp}", "identifier": mrn}).json()
    assert lt["total"] == 0
    count = client.get("/Patient", params={"identifier": mrn, "_summary": "count"}).json()
    assert count["total"] == 1 and not count.get("entry")


def test_search_unknown_param_lenient_and_strict(client: httpx.Client) -> None:
    lenient = client.get("/Patient", params={"nonsense": "1", "_count": 1})
    assert lenient.status_code == 200
    self_link = next(link["url"] for link in lenient.json()["link"] if link["relation"] == "self")
    assert "nonsense" not in self_link
    strict = client.get("/Patient", params={"nonsense": "1"}, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400


def test_post_search_and_system_search(client: httpx.Client) -> None:
    mrn = unique()
    pid = created(client, patient(mrn))["id"]
    form = client.post(
        "/Patient/_search",
        content=f"identifier={mrn}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 200 and form.json()["total"] == 1
    system = client.get("", params={"_type": "Patient", "_id": pid}).json()
    assert system["total"] == 1


def test_conditional_update_and_delete(client: httpx.Client) -> None:
    mrn = unique()
    criteria = {"identifier": f"http://hospital.example/mrn|{mrn}"}
    made = client.put(
        "/Patient",
        params=criteria,
        content=orjson.dumps(patient(mrn)),
        headers={"Content-Type": JSON},
    )
    assert made.status_code == 201
    changed = client.put(
        "/Patient",
        params=criteria,
        content=orjson.dumps(patient(mrn, gender="male")),
        headers={"Content-Type": JSON},
    )
    assert changed.status_code == 200
    assert changed.json()["id"] == made.json()["id"]
    assert changed.json()["meta"]["versionId"] == "2"
    assert client.delete("/Patient", params=criteria).status_code == 204
    assert client.get(f"/Patient/{made.json()['id']}").status_code == 410
