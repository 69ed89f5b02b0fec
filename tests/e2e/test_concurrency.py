"""Races over real HTTP: conditional create and If-Match have exactly one winner."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson

from tests.e2e.helpers import JSON, patient, unique


async def _race(
    base: str, requests: list[tuple[str, str, bytes, dict[str, Any]]]
) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        return await asyncio.gather(
            *(
                http.request(method, url, content=content, headers=headers)
                for method, url, content, headers in requests
            )
        )


def test_conditional_create_race_makes_one_resource(client: httpx.Client, base: str) -> None:
    mrn = unique()
    criteria = f"identifier=http://hospital.example/mrn|{mrn}"
    headers = {"Content-Type": JSON, "If-None-Exist": criteria}
    content = orjson.dumps(patient(mrn))
    responses = asyncio.run(_race(base, [("POST", "/Patient", content, headers)] * 12))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1 and statuses.count(200) == 11, statuses
    assert len({r.json()["id"] for r in responses}) == 1
    found = client.get("/Patient", params={"identifier": f"http://hospital.example/mrn|{mrn}"})
    assert found.json()["total"] == 1


def test_if_match_race_has_one_winner(client: httpx.Client, base: str) -> None:
    created = client.post(
        "/Patient", content=orjson.dumps(patient(unique())), headers={"Content-Type": JSON}
    ).json()
    url = f"/Patient/{created['id']}"
    requests = [
        (
            "PUT",
            url,
            orjson.dumps(created | {"birthDate": f"19{n:02d}-01-01"}),
            {"Content-Type": JSON, "If-Match": 'W/"1"'},
        )
        for n in range(10)
    ]
    responses = asyncio.run(_race(base, requests))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1 and statuses.count(412) == 9, statuses
    assert client.get(url).json()["meta"]["versionId"] == "2"
