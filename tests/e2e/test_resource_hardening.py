"""Over real HTTP: what the server refuses as a resource, and the Bundles it answers with.

The unit tests (tests/unit/model/test_hardening.py) hold the rules; these hold the status
codes and OperationOutcomes a client sees, and that the server's own output passes its own
validator.
"""

from __future__ import annotations

import httpx
import orjson

from fhir_server.model.validate import validate_resource
from tests.e2e.helpers import JSON, patient, unique

XML = "application/fhir+xml"


def outcome(response: httpx.Response, status: int) -> str:
    """The first issue's diagnostics of an OperationOutcome answered with `status`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return str(body["issue"][0].get("diagnostics", ""))


def test_empty_searchset_summary_count_and_history_have_no_entry_array(
    client: httpx.Client,
) -> None:
    family = unique()
    created = client.post("/Patient", json=patient(), headers={"Content-Type": JSON}).json()
    future = "_since=2999-01-01T00:00:00Z"
    for query in (
        f"/Patient?family={family}",
        f"/Patient?family={family}&_summary=count",
        f"/Patient/{created['id']}/_history?{future}",
        f"/Patient/_history?{future}",
    ):
        response = client.get(query)
        assert response.status_code == 200, response.text
        bundle = response.json()
        assert "entry" not in bundle, query
        assert validate_resource(bundle) is bundle


def test_a_body_without_resource_type_is_named_as_such(client: httpx.Client) -> None:
    response = client.post("/Patient", content=b'{"gender":"male"}', headers={"Content-Type": JSON})
    diagnostics = outcome(response, 400)
    assert "resourceType" in diagnostics and "None" not in diagnostics


def test_patch_in_an_unsupported_patch_format_is_a_415(client: httpx.Client) -> None:
    created = client.post("/Patient", json=patient(), headers={"Content-Type": JSON}).json()
    for media, body in (
        ("application/merge-patch+json", b'{"gender":"male"}'),
        ("application/xml-patch+xml", b"<diff/>"),
    ):
        response = client.patch(
            f"/Patient/{created['id']}", content=body, headers={"Content-Type": media}
        )
        outcome(response, 415)


def test_a_two_mebibyte_family_name_is_refused(client: httpx.Client) -> None:
    body = patient(family="x" * (2 * 1024 * 1024))
    diagnostics = outcome(
        client.post("/Patient", content=orjson.dumps(body), headers={"Content-Type": JSON}), 400
    )
    assert "Patient.name[0].family" in diagnostics


def test_json_nested_ten_thousand_deep_with_a_decimal_is_a_400(client: httpx.Client) -> None:
    body = b'{"resourceType":"Basic","code":' + b"[" * 10_000 + b"1.50" + b"]" * 10_000 + b"}"
    outcome(client.post("/Basic", content=body, headers={"Content-Type": JSON}), 400)


def test_values_that_break_readers_are_refused_in_json_and_xml(client: httpx.Client) -> None:
    cases = [
        (JSON, b'{"resourceType":"Patient","name":[{"family":"a\\u0000b"}]}'),
        (JSON, b'{"resourceType":"Patient","name":[{"family":"a\\u001bb"}]}'),
        (
            JSON,
            b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
            b'"valueQuantity":{"value":1e400}}',
        ),
        (JSON, b'{"resourceType":"Patient","gender":"male","gender":"female"}'),
        (
            XML,
            b'<Patient xmlns="http://hl7.org/fhir"><name><family value="a&#0;b"/></name></Patient>',
        ),
        (
            XML,
            b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/>'
            b'<gender value="female"/></Patient>',
        ),
    ]
    for media, body in cases:
        rtype = "Observation" if b"Observation" in body else "Patient"
        response = client.post(f"/{rtype}", content=body, headers={"Content-Type": media})
        outcome(response, 400)


def test_primitive_extensions_on_extension_values_are_stored_in_json_and_xml(
    client: httpx.Client,
) -> None:
    extension = {
        "url": "http://example.org/comment",
        "valueString": "Commentaire",
        "_valueString": {"extension": [{"url": "http://example.org/lang", "valueCode": "fr"}]},
    }
    sent = patient(extension=[extension])
    created = client.post("/Patient", json=sent, headers={"Content-Type": JSON})
    assert created.status_code == 201, created.text
    assert created.json()["extension"] == [extension]
    xml = client.get(f"/Patient/{created.json()['id']}", headers={"Accept": XML})
    assert xml.status_code == 200
    again = client.put(
        f"/Patient/{created.json()['id']}", content=xml.content, headers={"Content-Type": XML}
    )
    assert again.status_code == 200, again.text
    assert again.json()["extension"] == [extension]
