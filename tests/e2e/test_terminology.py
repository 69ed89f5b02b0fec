"""The terminology service over real HTTP: the R4 core content, uploaded code systems,
token search modifiers and binding validation.

Expected answers are read off the R4 core content by hand (administrative-gender,
v3-ActCode, cm-administrative-gender-v2) or off the code systems the tests upload.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.helpers import JSON, observation, patient, unique

GENDER_CS = "http://hl7.org/fhir/administrative-gender"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2_0001 = "http://terminology.hl7.org/CodeSystem/v2-0001"
GENDER_MAP = "http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v2"


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(path, content=orjson.dumps(body), headers={"Content-Type": JSON})


def put(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return client.put(path, content=orjson.dumps(body), headers={"Content-Type": JSON})


def parameters(**values: Any) -> dict[str, Any]:
    parts = []
    for name, value in values.items():
        key = {str: "valueString", bool: "valueBoolean", int: "valueInteger"}.get(
            type(value), "valueCoding"
        )
        parts.append({"name": name, key: value})
    return {"resourceType": "Parameters", "parameter": parts}


def part(body: dict[str, Any], name: str) -> Any:
    for p in body["parameter"]:
        if p["name"] == name:
            return next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
    return None


def codes(expansion: dict[str, Any]) -> set[str]:
    return {c["code"] for c in expansion["expansion"].get("contains", [])}


# -- the R4 core content ----------------------------------------------------------------


def test_lookup_administrative_gender(client: httpx.Client) -> None:
    response = client.get("/CodeSystem/$lookup", params={"system": GENDER_CS, "code": "female"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Parameters"
    assert part(body, "display") == "Female"
    assert part(body, "name") == "AdministrativeGender"


def test_expand_administrative_gender(client: httpx.Client) -> None:
    response = client.get("/ValueSet/$expand", params={"url": GENDER_VS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "ValueSet"
    assert codes(body) == {"male", "female", "other", "unknown"}
    assert body["expansion"]["total"] == 4


def test_validate_code_in_value_set_by_post(client: httpx.Client) -> None:
    good = post(
        client, "/ValueSet/$validate-code", parameters(url=GENDER_VS, code="male", system=GENDER_CS)
    )
    assert good.status_code == 200, good.text
    assert part(good.json(), "result") is True
    assert part(good.json(), "display") == "Male"
    bad = post(
        client, "/ValueSet/$validate-code", parameters(url=GENDER_VS, code="M", system=GENDER_CS)
    )
    assert part(bad.json(), "result") is False
    assert "M" in part(bad.json(), "message")


def test_subsumes_on_the_v3_act_code_hierarchy(client: httpx.Client) -> None:
    def outcome(a: str, b: str) -> str:
        response = client.get(
            "/CodeSystem/$subsumes", params={"system": ACT_CODE, "codeA": a, "codeB": b}
        )
        assert response.status_code == 200, response.text
        return part(response.json(), "outcome")

    # CC (credit card) has the children AE, DN, DV, MC, V; it sits under _ActAccountCode
    assert outcome("CC", "AE") == "subsumes"
    assert outcome("AE", "CC") == "subsumed-by"
    assert outcome("_ActAccountCode", "MC") == "subsumes"
    assert outcome("CASH", "AE") == "not-subsumed"
    assert outcome("CC", "CC") == "equivalent"


def test_translate_with_the_gender_concept_map(client: httpx.Client) -> None:
    response = client.get(
        "/ConceptMap/$translate", params={"url": GENDER_MAP, "system": GENDER_CS, "code": "other"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert part(body, "result") is True
    matches = [p["part"] for p in body["parameter"] if p["name"] == "match"]
    found = {
        (
            next(x["valueCode"] for x in m if x["name"] == "equivalence"),
            next(x["valueCoding"]["code"] for x in m if x["name"] == "concept"),
        )
        for m in matches
    }
    assert found == {("wider", "A"), ("wider", "O")}

    back = client.get(
        "/ConceptMap/$translate",
        params={"url": GENDER_MAP, "system": V2_0001, "code": "M", "reverse": "true"},
    )
    matches = [p["part"] for p in back.json()["parameter"] if p["name"] == "match"]
    assert [
        next(x["valueCoding"] for x in m if x["name"] == "concept")["code"] for m in matches
    ] == ["male"]


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/CodeSystem/$lookup", {"system": "http://example.org/unknown", "code": "x"}, 404),
        ("/CodeSystem/$lookup", {"system": GENDER_CS, "code": "no-such-code"}, 404),
        ("/CodeSystem/$lookup", {"system": GENDER_CS}, 400),
        ("/ValueSet/$expand", {"url": "http://example.org/no-such-value-set"}, 404),
        ("/ValueSet/$expand", {"url": GENDER_VS, "count": "-1"}, 400),
        ("/ConceptMap/$translate", {"url": GENDER_MAP, "code": "x"}, 400),
        ("/Patient/$expand", {}, 404),
    ],
)
def test_bad_terminology_calls_are_clear_errors(
    client: httpx.Client, path: str, params: dict[str, Any], status: int
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


def test_metadata_lists_the_operations(client: httpx.Client) -> None:
    statement = client.get("/metadata").json()
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {o["name"] for o in by_type["ValueSet"]["operation"]} >= {"expand", "validate-code"}
    assert {o["name"] for o in by_type["CodeSystem"]["operation"]} >= {
        "lookup",
        "validate-code",
        "subsumes",
    }
    assert {o["name"] for o in by_type["ConceptMap"]["operation"]} >= {"translate"}


# -- uploaded content -------------------------------------------------------------------


def labs_code_system(url: str) -> dict[str, Any]:
    """panel > (a > a1), b; c stands alone."""
    return {
        "resourceType": "CodeSystem",
        "url": url,
        "status": "active",
        "content": "complete",
        "hierarchyMeaning": "is-a",
        "caseSensitive": True,
        "concept": [
            {
                "code": "panel",
                "display": "Panel",
                "concept": [
                    {
                        "code": "a",
                        "display": "Alpha",
                        "concept": [{"code": "a1", "display": "Alpha one"}],
                    },
                    {"code": "b", "display": "Beta"},
                ],
            },
            {"code": "c", "display": "Gamma"},
        ],
    }


def test_uploaded_code_system_takes_effect_at_once(client: httpx.Client) -> None:
    url = f"http://example.org/cs/labs-{unique()}"
    created = post(client, "/CodeSystem", labs_code_system(url))
    assert created.status_code == 201, created.text
    cs_id = created.json()["id"]

    vs = {
        "resourceType": "ValueSet",
        "url": f"{url}/vs",
        "status": "active",
        "compose": {
            "include": [
                {"system": url, "filter": [{"property": "concept", "op": "is-a", "value": "a"}]}
            ]
        },
    }
    assert post(client, "/ValueSet", vs).status_code == 201
    expanded = client.get("/ValueSet/$expand", params={"url": f"{url}/vs"}).json()
    assert codes(expanded) == {"a", "a1"}

    lookup = client.get(f"/CodeSystem/{cs_id}/$lookup", params={"code": "a1"})
    assert part(lookup.json(), "display") == "Alpha one"

    changed = {**labs_code_system(url), "id": cs_id}
    changed["concept"][0]["concept"][0]["concept"].append({"code": "a2", "display": "Alpha two"})
    assert put(client, f"/CodeSystem/{cs_id}", changed).status_code == 200
    assert codes(client.get("/ValueSet/$expand", params={"url": f"{url}/vs"}).json()) == {
        "a",
        "a1",
        "a2",
    }

    assert client.delete(f"/CodeSystem/{cs_id}").status_code in (200, 204)
    gone = client.get("/CodeSystem/$lookup", params={"system": url, "code": "a"})
    assert gone.status_code == 404


def test_token_search_through_the_terminology_service(client: httpx.Client) -> None:
    url = f"http://example.org/cs/labs-{unique()}"
    assert post(client, "/CodeSystem", labs_code_system(url)).status_code == 201
    vs_url = f"{url}/a-and-b"
    vs = {
        "resourceType": "ValueSet",
        "url": vs_url,
        "status": "active",
        "compose": {"include": [{"system": url, "concept": [{"code": "a"}, {"code": "b"}]}]},
    }
    assert post(client, "/ValueSet", vs).status_code == 201
    subject = f"Patient/{post(client, '/Patient', patient(unique())).json()['id']}"
    ids = {}
    for code in ("a", "a1", "b", "c"):
        obs = observation(subject)
        obs["code"] = {"coding": [{"system": url, "code": code}]}
        ids[code] = post(client, "/Observation", obs).json()["id"]

    def found(modifier: str, value: str) -> set[str]:
        response = client.get(
            "/Observation", params={"subject": subject, f"code:{modifier}": value, "_count": "50"}
        )
        assert response.status_code == 200, response.text
        entries = response.json().get("entry", [])
        names = {v: k for k, v in ids.items()}
        return {names[e["resource"]["id"]] for e in entries if e["search"]["mode"] == "match"}

    assert found("below", f"{url}|a") == {"a", "a1"}
    assert found("below", f"{url}|panel") == {"a", "a1", "b"}
    assert found("above", f"{url}|a1") == {"a", "a1"}
    assert found("in", vs_url) == {"a", "b"}
    assert found("not-in", vs_url) == {"a1", "c"}

    unknown = client.get("/Observation", params={"code:in": "http://example.org/none"})
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"
    malformed = client.get("/Observation", params={"code:below": "no-bar"})
    assert malformed.status_code == 400


# -- bindings ---------------------------------------------------------------------------


def test_required_binding_is_checked_on_write(client: httpx.Client) -> None:
    response = post(client, "/Patient", patient(unique(), gender="x"))
    assert response.status_code == 400, response.text
    issues = response.json()["issue"]
    assert any("Patient.gender" in i.get("expression", []) for i in issues)
    assert post(client, "/Patient", patient(unique(), gender="other")).status_code == 201


def test_validate_operation_reports_errors_and_warnings(client: httpx.Client) -> None:
    bad = post(client, "/Patient/$validate", patient(unique(), gender="x"))
    assert bad.status_code == 200, bad.text
    errors = [i for i in bad.json()["issue"] if i["severity"] == "error"]
    assert errors and errors[0]["expression"] == ["Patient.gender"]

    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "NOT-A-CLASS"},
    }
    warned = post(
        client,
        "/Encounter/$validate",
        {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": encounter}]},
    ).json()
    assert [i["severity"] for i in warned["issue"]] == ["warning"]
    assert warned["issue"][0]["expression"] == ["Encounter.class"]

    good = post(client, "/Patient/$validate", patient(unique())).json()
    assert [i["severity"] for i in good["issue"]] == ["information"]


def test_expand_a_posted_value_set_and_a_bad_filter(client: httpx.Client) -> None:
    include = {"system": GENDER_CS, "concept": [{"code": "male"}, {"code": "female"}]}
    vs = {"resourceType": "ValueSet", "status": "active", "compose": {"include": [include]}}
    posted = post(client, "/ValueSet/$expand", vs)
    assert posted.status_code == 200, posted.text
    assert codes(posted.json()) == {"male", "female"}

    bad = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": GENDER_CS,
                    "filter": [{"property": "concept", "op": "bogus", "value": "x"}],
                }
            ]
        },
    }
    wrapped = post(
        client,
        "/ValueSet/$expand",
        {"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": bad}]},
    )
    assert wrapped.status_code == 400, wrapped.text
    assert wrapped.json()["resourceType"] == "OperationOutcome"
