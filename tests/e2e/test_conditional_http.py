"""Conditional writes over real HTTP: criteria that filter nothing, and `POST Type?criteria`.

Criteria with no filter (an empty value, only `_count`) used to match every resource of
the type; `POST Patient?identifier=x` created a duplicate. Both are a 400 now.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.helpers import JSON, patient, unique

FORM = "application/x-www-form-urlencoded"
# A type no other end-to-end test writes, so that one resource may be alone in it
TYPE = "EnrollmentRequest"


def enrollment(value: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": TYPE,
        "status": status,
        "identifier": [{"system": "http://example.org/enrol", "value": value}],
    }


def send(
    client: httpx.Client, method: str, url: str, body: object = None, **headers: str
) -> httpx.Response:
    content = None if body is None else orjson.dumps(body)
    return client.request(method, url, content=content, headers={"Content-Type": JSON, **headers})


def diagnostics(response: httpx.Response) -> str:
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return " ".join(issue.get("diagnostics", "") for issue in outcome["issue"])


@pytest.mark.parametrize("criteria", ["identifier=", "_count=1", "identifier=|"])
def test_criteria_without_a_filter_are_refused(client: httpx.Client, criteria: str) -> None:
    made = send(client, "POST", f"/{TYPE}", enrollment(unique())).json()

    refused = [
        send(client, "POST", f"/{TYPE}", enrollment(unique()), **{"If-None-Exist": criteria}),
        send(client, "PUT", f"/{TYPE}?{criteria}", enrollment(unique(), "cancelled")),
        send(client, "DELETE", f"/{TYPE}?{criteria}"),
        send(
            client,
            "PATCH",
            f"/{TYPE}?{criteria}",
            [{"op": "replace", "path": "/status", "value": "cancelled"}],
            **{"Content-Type": "application/json-patch+json"},
        ),
    ]
    for response in refused:
        assert response.status_code == 400, response.request.method
        assert "filter nothing" in diagnostics(response)

    now = client.get(f"/{TYPE}/{made['id']}")
    assert now.status_code == 200
    assert now.json()["meta"]["versionId"] == "1" and now.json()["status"] == "active"


@pytest.mark.parametrize("prefer", [None, "handling=lenient"])
def test_create_with_a_query_string_is_refused(client: httpx.Client, prefer: str | None) -> None:
    mrn = unique()
    headers = {"Prefer": prefer} if prefer else {}
    response = send(
        client,
        "POST",
        f"/Patient?identifier=http://hospital.example/mrn|{mrn}",
        patient(mrn),
        **headers,
    )
    assert response.status_code == 400
    assert "If-None-Exist" in diagnostics(response)
    found = client.get("/Patient", params={"identifier": f"http://hospital.example/mrn|{mrn}"})
    assert found.json()["total"] == 0


def test_create_with_a_form_body_is_refused(client: httpx.Client) -> None:
    """A form is a search's body only (and what a cross-site page can post without asking):
    on a create it is an unsupported media type, and nothing is stored."""
    mrn = unique()
    response = client.post("/Patient", content=f"identifier={mrn}", headers={"Content-Type": FORM})
    assert response.status_code == 415
    assert client.get("/Patient", params={"identifier": mrn}).json()["total"] == 0


def test_search_with_a_form_body_still_searches(client: httpx.Client) -> None:
    mrn = unique()
    send(client, "POST", "/Patient", patient(mrn))
    response = client.post(
        "/Patient/_search",
        content=f"identifier=http://hospital.example/mrn|{mrn}",
        headers={"Content-Type": FORM},
    )
    assert response.status_code == 200
    assert response.json()["type"] == "searchset" and response.json()["total"] == 1


def test_conditional_create_with_if_none_exist_still_works(client: httpx.Client) -> None:
    mrn = unique()
    criteria = f"identifier=http://hospital.example/mrn|{mrn}"
    first = send(client, "POST", "/Patient", patient(mrn), **{"If-None-Exist": criteria})
    again = send(client, "POST", "/Patient", patient(mrn), **{"If-None-Exist": criteria})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_conditional_patch_without_a_match_is_404(client: httpx.Client) -> None:
    response = send(
        client,
        "PATCH",
        f"/Patient?identifier=http://hospital.example/mrn|{unique()}",
        [{"op": "replace", "path": "/gender", "value": "male"}],
        **{"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 404
