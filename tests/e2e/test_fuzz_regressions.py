"""Inputs the fuzz test (test_fuzz.py) found to give a 5xx, each answered below 500 now."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.e2e.helpers import JSON, patient


def post(client: httpx.Client, url: str, body: Any, **headers: str) -> httpx.Response:
    return client.post(url, content=orjson.dumps(body), headers={"Content-Type": JSON, **headers})


def issue(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    first: dict[str, Any] = body["issue"][0]
    return first


def test_transaction_entry_with_a_fullurl_that_is_not_a_string(client: httpx.Client) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": [None], "resource": patient(), "request": {"method": "POST",
                                                               "url": "Patient"}}]}
    found = issue(post(client, "", bundle), 400)
    assert found["expression"] == ["Bundle.entry[0].fullUrl"]
