"""XML in and out, content negotiation, and the CapabilityStatement."""

from __future__ import annotations

import httpx
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from lxml import etree

from tests.e2e.helpers import unique

XML = "application/fhir+xml"
NS = {"f": "http://hl7.org/fhir"}


def test_create_in_xml_read_in_json_and_xml(client: httpx.Client) -> None:
    mrn = unique()
    body = (
        '<Patient xmlns="http://hl7.org/fhir"><identifier>'
        f'<system value="http://hospital.example/mrn"/><value value="{mrn}"/></identifier>'
        '<name><family value="Ng"/><given value="Li"/></name><gender value="male"/></Patient>'
    )
    created = client.post("/Patient", content=body, headers={"Content-Type": XML, "Accept": XML})
    assert created.status_code == 201, created.text
    assert created.headers["Content-Type"].startswith(XML)
    tree = etree.fromstring(created.content)
    pid = tree.find("f:id", NS).get("value")
    as_json = client.get(f"/Patient/{pid}").json()
    assert as_json["name"][0]["given"] == ["Li"] and as_json["gender"] == "male"
    by_format = client.get(f"/Patient/{pid}", params={"_format": "xml"})
    assert by_format.headers["Content-Type"].startswith(XML)
    assert etree.fromstring(by_format.content).find("f:gender", NS).get("value") == "male"
    by_accept = client.get(f"/Patient/{pid}", headers={"Accept": XML})
    assert etree.fromstring(by_accept.content).tag == "{http://hl7.org/fhir}Patient"


def test_errors_follow_the_requested_format(client: httpx.Client) -> None:
    response = client.get(f"/Patient/{unique()}", headers={"Accept": XML})
    assert response.status_code == 404
    assert etree.fromstring(response.content).tag == "{http://hl7.org/fhir}OperationOutcome"


def test_search_bundle_in_xml(client: httpx.Client) -> None:
    response = client.get("/Patient", params={"_count": 2, "_format": "xml"})
    assert response.status_code == 200
    assert etree.fromstring(response.content).tag == "{http://hl7.org/fhir}Bundle"


def test_metadata_is_a_valid_r4_capability_statement(client: httpx.Client) -> None:
    response = client.get("/metadata")
    assert response.status_code == 200
    body = response.json()
    assert body["fhirVersion"] == "4.0.1"
    CapabilityStatement.model_validate(body)
    rest = body["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    codes = {i["code"] for i in patient["interaction"]}
    assert codes == {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    }
    assert {"identifier", "birthdate", "name"} <= {p["name"] for p in patient["searchParam"]}
    assert {i["code"] for i in rest["interaction"]} == {
        "transaction",
        "batch",
        "search-system",
        "history-system",
    }
    xml = client.get("/metadata", headers={"Accept": XML})
    assert etree.fromstring(xml.content).tag == "{http://hl7.org/fhir}CapabilityStatement"
