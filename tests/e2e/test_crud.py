"""create, read, vread, update, delete, conditional reads, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.e2e.helpers import JSON, patient, unique


def create(client: httpx.Client, body: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post(
        f"/{body['resourceType']}",
        content=orjson.dumps(body),
        headers={"Content-Type": JSON, **headers},
    )


def test_create_assigns_id_version_and_headers(client: httpx.Client, base: str) -> None:
    sent = patient(unique(), id="client-chosen")
    response = create(client, sent)
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Location"] == f"{base}/Patient/{body['id']}/_history/1"
    assert "GMT" in response.headers["Last-Modified"]
    assert response.headers["Content-Type"].startswith("application/fhir+json")


def test_read_serves_the_stored_bytes(client: httpx.Client) -> None:
    created = create(client, patient(unique()))
    read = client.get(f"/Patient/{created.json()['id']}")
    assert read.status_code == 200
    assert read.content == created.content
    assert read.headers["ETag"] == 'W/"1"'


def test_update_increments_version_and_vread_keeps_old(client: httpx.Client) -> None:
    body = create(client, patient(unique())).json()
    body["gender"] = "other"
    updated = client.put(
        f"/Patient/{body['id']}", content=orjson.dumps(body), headers={"Content-Type": JSON}
    )
    assert updated.status_code == 200
    assert updated.json()["meta"]["versionId"] == "2"
    assert updated.json()["gender"] == "other"
    old = client.get(f"/Patient/{body['id']}/_history/1")
    assert old.status_code == 200 and old.json()["gender"] == "female"
    assert client.get(f"/Patient/{body['id']}/_history/9").status_code == 404


def test_update_without_change_keeps_version(client: httpx.Client) -> None:
    body = create(client, patient(unique())).json()
    again = client.put(
        f"/Patient/{body['id']}", content=orjson.dumps(body), headers={"Content-Type": JSON}
    )
    assert again.status_code == 200
    assert again.json()["meta"]["versionId"] == "1"


def test_update_as_create_with_client_id(client: httpx.Client) -> None:
    id = f"client-{unique()}"
    response = client.put(
        f"/Patient/{id}",
        content=orjson.dumps(patient(unique(), id=id)),
        headers={"Content-Type": JSON},
    )
    assert response.status_code == 201
    assert response.json()["id"] == id
    assert client.get(f"/Patient/{id}").json()["meta"]["versionId"] == "1"


def test_delete_tombstone_then_gone_then_recreate(client: httpx.Client) -> None:
    body = create(client, patient(unique())).json()
    pid = body["id"]
    assert client.delete(f"/Patient/{pid}").status_code == 204
    gone = client.get(f"/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert client.delete(f"/Patient/{pid}").status_code == 204  # idempotent
    assert client.get(f"/Patient/{pid}/_history/2").status_code == 410
    history = client.get(f"/Patient/{pid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    back = client.put(f"/Patient/{pid}", content=orjson.dumps(body), headers={"Content-Type": JSON})
    assert back.status_code == 201
    assert back.json()["meta"]["versionId"] == "3"


def test_if_match(client: httpx.Client) -> None:
    body = create(client, patient(unique())).json()
    url, content = f"/Patient/{body['id']}", orjson.dumps(body | {"gender": "male"})
    stale = client.put(url, content=content, headers={"Content-Type": JSON, "If-Match": 'W/"7"'})
    assert stale.status_code == 412
    fresh = client.put(url, content=content, headers={"Content-Type": JSON, "If-Match": 'W/"1"'})
    assert fresh.status_code == 200
    assert fresh.headers["ETag"] == 'W/"2"'


def test_if_none_match_and_if_modified_since_give_304(client: httpx.Client) -> None:
    created = create(client, patient(unique()))
    url = f"/Patient/{created.json()['id']}"
    assert client.get(url, headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": 'W/"0"'}).status_code == 200
    last_modified = created.headers["Last-Modified"]
    assert client.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get(url, headers={"If-Modified-Since": old}).status_code == 200


def test_prefer_return(client: httpx.Client) -> None:
    minimal = create(client, patient(unique()), Prefer="return=minimal")
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["Location"]
    outcome = create(client, patient(unique()), Prefer="return=OperationOutcome")
    assert outcome.json()["resourceType"] == "OperationOutcome"


def test_summary_and_elements_on_read(client: httpx.Client) -> None:
    body = patient(
        unique(),
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Jane</div>'},
    )
    pid = create(client, body).json()["id"]
    elements = client.get(f"/Patient/{pid}", params={"_elements": "gender"}).json()
    assert elements["gender"] == "female"
    assert "name" not in elements and "birthDate" not in elements
    assert any(t["code"] == "SUBSETTED" for t in elements["meta"]["tag"])
    data = client.get(f"/Patient/{pid}", params={"_summary": "data"}).json()
    assert "text" not in data and data["name"][0]["family"] == "Doe"
    text = client.get(f"/Patient/{pid}", params={"_summary": "text"}).json()
    assert "text" in text and "gender" not in text


def test_pretty(client: httpx.Client) -> None:
    pid = create(client, patient(unique())).json()["id"]
    pretty = client.get(f"/Patient/{pid}", params={"_pretty": "true"})
    assert b"\n  " in pretty.content
    assert pretty.json()["id"] == pid


def test_decimal_precision_is_kept(client: httpx.Client) -> None:
    body = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"Hb"},'
        b'"valueQuantity":{"value":13.50,"unit":"g/dL"},'
        b'"referenceRange":[{"low":{"value":1.2e1}}]}'
    )
    created = client.post("/Observation", content=body, headers={"Content-Type": JSON})
    assert created.status_code == 201, created.text
    assert b'"value":13.50' in created.content and b'"value":1.2e1' in created.content
    read = client.get(f"/Observation/{created.json()['id']}", params={"_format": "xml"})
    assert b'<value value="13.50"/>' in read.content
    back = client.post(
        "/Observation",
        content=read.content.replace(b"13.50", b"7.10"),
        headers={"Content-Type": "application/fhir+xml"},
    )
    assert b'"value":7.10' in client.get(f"/Observation/{back.json()['id']}").content
