"""Bad input gets an OperationOutcome with the right status, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import BODY_LIMIT
from tests.e2e.helpers import JSON, patient, unique


def outcome(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "error"
    return body


def test_malformed_json(client: httpx.Client) -> None:
    outcome(
        client.post("/Patient", content=b'{"resourceType": "Pat', headers={"Content-Type": JSON}),
        400,
    )


def test_malformed_xml(client: httpx.Client) -> None:
    outcome(
        client.post(
            "/Patient",
            content=b"<Patient xmlns='http://hl7.org/fhir'><gend",
            headers={"Content-Type": "application/fhir+xml"},
        ),
        400,
    )


def test_type_mismatch(client: httpx.Client) -> None:
    body = outcome(
        client.post(
            "/Observation", content=orjson.dumps(patient()), headers={"Content-Type": JSON}
        ),
        400,
    )
    assert "Patient" in body["issue"][0]["diagnostics"]


def test_id_mismatch_on_update(client: httpx.Client) -> None:
    outcome(
        client.put(
            "/Patient/abc", content=orjson.dumps(patient(id="xyz")), headers={"Content-Type": JSON}
        ),
        400,
    )


def test_unknown_type_and_missing_resource(client: httpx.Client) -> None:
    outcome(client.get("/Unicorn/1"), 404)
    outcome(client.get(f"/Patient/{unique()}"), 404)


def test_invalid_resource_names_the_paths(client: httpx.Client) -> None:
    bad = patient(gender=5, birthDate="1990-13-45")
    body = outcome(
        client.post("/Patient", content=orjson.dumps(bad), headers={"Content-Type": JSON}), 400
    )
    paths = {e for issue in body["issue"] for e in issue.get("expression", [])}
    assert "Patient.gender" in paths and "Patient.birthDate" in paths


def test_unsupported_media_type(client: httpx.Client) -> None:
    outcome(client.post("/Patient", content=b"hello", headers={"Content-Type": "text/plain"}), 415)


def test_body_over_limit(client: httpx.Client) -> None:
    huge = b'{"resourceType":"Patient","text":"' + b"x" * (BODY_LIMIT + 10) + b'"}'
    outcome(client.post("/Patient", content=huge, headers={"Content-Type": JSON}), 413)


def test_if_match_on_a_missing_resource(client: httpx.Client) -> None:
    id = unique()
    outcome(
        client.put(
            f"/Patient/{id}",
            content=orjson.dumps(patient(id=id)),
            headers={"Content-Type": JSON, "If-Match": 'W/"1"'},
        ),
        412,
    )


def test_method_not_allowed(client: httpx.Client) -> None:
    outcome(client.delete("/metadata"), 405)


def test_bad_search_value(client: httpx.Client) -> None:
    body = outcome(client.get("/Patient", params={"birthdate": "not-a-date"}), 400)
    assert "birthdate" in body["issue"][0]["diagnostics"]


def test_integer_beyond_64_bits(client: httpx.Client) -> None:
    body = b'{"resourceType": "Patient", "multipleBirthInteger": 123456789012345678901234567890}'
    response = client.post("/Patient", content=body, headers={"Content-Type": JSON})
    assert response.status_code == 400


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["resourceType", "id", "name", "gender", "meta", "identifier", "birthDate", "x"]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=json_values)
def test_random_bodies_never_500(client: httpx.Client, body: object) -> None:
    if isinstance(body, dict) and "resourceType" in body:
        body["resourceType"] = "Patient"
    for method, url in (
        ("POST", "/Patient"),
        ("PUT", "/Patient/p1"),
        ("POST", ""),
        ("PATCH", "/Patient/p1"),
    ):
        response = client.request(
            method, url, content=orjson.dumps(body), headers={"Content-Type": JSON}
        )
        assert response.status_code < 500, response.text
