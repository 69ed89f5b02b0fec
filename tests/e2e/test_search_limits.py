"""Search bounds over real HTTP: what no search can honour is a 400 OperationOutcome naming
the parameter (never a 500), a thousand OR values work, links stay small, and the
`FHIR_MAX_*` settings reach the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import JSON, patient, unique
from tests.support.server import ServerProcess

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _refused(response: httpx.Response, name: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text[:500]
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [name]
    return outcome


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/Observation", {"value-quantity": "1e999999999"}, "value-quantity"),
        ("/Patient", {"_sort": ",".join(["name"] * 200)}, "_sort"),
        ("/Patient", {"_offset": "99999999999999999999"}, "_offset"),
        ("/Patient", {"_filter": "(" * 400 + "name eq x" + ")" * 400}, "_filter"),
        ("/Patient/x/_history/²", {}, "_history"),
        ("/Patient/_history", {"_count": "²"}, "_count"),
    ],
)
def test_refused_with_a_400_naming_the_parameter(
    client: httpx.Client, path: str, params: dict[str, str], name: str
) -> None:
    _refused(client.get(path, params=params), name)


def test_a_huge_form_search_is_refused_not_echoed(client: httpx.Client) -> None:
    body = "name=" + "x" * (2 * 1024 * 1024)
    response = client.post("/Patient/_search", content=body, headers=FORM)
    outcome = _refused(response, "name")
    assert outcome["issue"][0]["code"] == "too-long"
    assert len(response.content) < 4096  # the value is not sent back


def test_a_thousand_identifiers_find_the_patients_and_the_links_stay_small(
    client: httpx.Client,
) -> None:
    tag = unique()
    created = {
        client.post("/Patient", json=patient(f"{tag}-{n}"), headers={"Content-Type": JSON}).json()[
            "id"
        ]: n
        for n in (3, 500, 997)
    }
    wanted = ",".join(f"http://hospital.example/mrn|{tag}-{n}" for n in range(1000))
    response = client.post(
        "/Patient/_search", content=f"_count=2&identifier={wanted}", headers=FORM
    )
    assert response.status_code == 200, response.text[:500]
    bundle = response.json()
    assert bundle["total"] == 3
    found = {e["resource"]["id"] for e in bundle["entry"]}
    assert found <= set(created) and len(found) == 2
    next_url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    assert len(next_url) < 64 * 1024
    rest = client.get(next_url)
    assert {e["resource"]["id"] for e in rest.json()["entry"]} == set(created) - found


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    database: Path = tmp_path_factory.mktemp("limits") / "fhir.db"
    process = ServerProcess(
        database,
        FHIR_MAX_SORT_KEYS="2",
        FHIR_MAX_OR_VALUES="3",
        FHIR_MAX_INCLUDES="1",
        FHIR_MAX_QUERY_BYTES="2000",
        FHIR_MAX_SEARCH_CRITERIA="2",
    ).start()
    yield process
    process.stop()


def test_the_settings_reach_the_server(strict_server: ServerProcess) -> None:
    with httpx.Client(base_url=strict_server.base, timeout=60) as http:
        assert http.get("/Patient", params={"_sort": "name,birthdate"}).status_code == 200
        _refused(http.get("/Patient", params={"_sort": "name,birthdate,gender"}), "_sort")
        assert http.get("/Patient", params={"_id": "a,b,c"}).status_code == 200
        _refused(http.get("/Patient", params={"_id": "a,b,c,d"}), "_id")
        includes: list[tuple[str, str | int | float | bool | None]] = [
            ("_include", "Patient:organization"),
            ("_revinclude", "Observation:subject"),
        ]
        _refused(http.get("/Patient", params=includes), "_revinclude")
        _refused(http.get("/Patient", params={"name": "x" * 2000}), "name")
        _refused(
            http.get("/Patient", params=[("name", "a"), ("gender", "male"), ("birthdate", "1970")]),
            "birthdate",
        )
