"""Consents, security labels and masking over real HTTP: uvicorn serving the app with
authorization on (the SMART policy wrapped by the privacy policy), tokens minted by a
test key ring with the claims the authorization server gives (fhirUser, role,
client_id). Every way to reach a withheld resource is tried: read, vread, history,
search, `_include`, `_revinclude`, chains, `_has` and `$everything`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from fhir_server.api.app import create_app
from fhir_server.auth.bearer import BearerVerifier
from fhir_server.settings import Settings
from tests.e2e.test_smart_http import Served
from tests.support.server import free_port
from tests.support.smart import TestKeyRing, TestRevocations

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"


class PrivacyServed(Served):
    """`Served` with the research client configured (the app built once, here)."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.ring, self.revocations = TestKeyRing(), TestRevocations()
        settings = Settings(
            database=str(tmp / "fhir.db"),
            base_url=self.base,
            auth="on",
            privacy_research_clients="research-app",
        )
        app = create_app(settings, verifier=BearerVerifier(self.ring, self.revocations))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)


def _patient(id: str, family: str, ssn: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": id,
        "name": [{"family": family}],
        "managingOrganization": {"reference": "Organization/org1"},
        "identifier": [
            {
                "type": {"coding": [{"system": V2, "code": "SS"}]},
                "system": "http://hl7.org/fhir/sid/us-ssn",
                "value": ssn,
            },
            {
                "type": {"coding": [{"system": V2, "code": "MR"}]},
                "system": "urn:mrn",
                "value": f"MRN-{id}",
            },
        ],
    }


def _observation(id: str, patient: str, label: tuple[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
        "subject": {"reference": f"Patient/{patient}"},
    }
    if label:
        body["meta"] = {"security": [{"system": label[0], "code": label[1]}]}
    return body


RECIPIENT = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}
    ]
}


def _actor(reference: str) -> list[dict[str, Any]]:
    return [{"role": RECIPIENT, "reference": {"reference": reference}}]


def _consent(id: str, patient: str, deny: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": id,
        "status": "active",
        "scope": {"coding": [{"system": SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "provision": {"type": "permit", "provision": [{"type": "deny", **deny}]},
    }


def _role(id: str, who: str, org: str) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "id": id,
        "practitioner": {"reference": f"Practitioner/{who}"},
        "organization": {"reference": f"Organization/{org}"},
    }


DATA = [
    {"resourceType": "Organization", "id": "org1", "name": "One"},
    {"resourceType": "Organization", "id": "org2", "name": "Two"},
    _role("r1", "doc1", "org1"),
    _role("r2a", "doc2", "org1"),
    _role("r2b", "doc2", "org2"),
    _patient("a", "Alpha", "123-45-6789"),
    _patient("b", "Beta", "987-65-4321"),
    _observation("a-obs", "a"),
    _observation("b-obs", "b"),
    _observation("a-hiv", "a", (ACT, "HIV")),
    _observation("a-vip", "a", (CONF, "V")),
    _consent("ca", "a", {"actor": _actor("Organization/org2")}),
    _consent(
        "cb",
        "b",
        {
            "purpose": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}
            ]
        },
    ),
]

CALLERS: dict[str, dict[str, Any]] = {
    "doc1": {"fhirUser": "Practitioner/doc1", "role": "clinician"},
    "doc2": {"fhirUser": "Practitioner/doc2", "role": "clinician"},
    "research": {"fhirUser": "Practitioner/doc1", "role": "clinician", "client_id": "research-app"},
    "nurse": {"fhirUser": "Practitioner/doc1", "role": "nurse"},
    "front-desk": {"fhirUser": "Practitioner/doc1", "role": "front-desk"},
    "analyst": {"fhirUser": "Practitioner/doc1", "role": "analyst"},
}
WITHHELD = {
    "doc1": {"a-vip"},
    "doc2": {"a", "a-obs", "a-hiv", "a-vip"},
    "research": {"b", "b-obs", "a-vip"},
    "nurse": {"a-hiv", "a-vip"},
}
SEARCHES: list[tuple[str, dict[str, str]]] = [
    ("Observation", {"_count": "100"}),
    ("Observation", {"_id": "a-obs,a-hiv,a-vip,b-obs"}),
    ("Patient", {"_revinclude": "Observation:subject"}),
    ("Observation", {"_include": "Observation:subject"}),
    ("Observation", {"subject:Patient.family": "Alpha"}),
    ("Observation", {"subject:Patient.family": "Beta"}),
    ("Patient", {"_has:Observation:subject:code": "1234-5"}),
    ("Patient", {"_has:Observation:subject:_security": f"{CONF}|V"}),
    ("Patient/$everything", {}),
    ("Patient/a/$everything", {}),
    ("Patient/b/$everything", {}),
    ("Patient/a/Observation", {}),
    ("Observation/a-obs/_history", {}),
    ("Observation/_history", {}),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivacyServed]:
    server = PrivacyServed(tmp_path_factory.mktemp("privacy"))
    server.start()
    with server.client("system/*.*") as admin:
        for body in DATA:
            response = admin.put(f"/{body['resourceType']}/{body['id']}", json=body)
            assert response.status_code in (200, 201), response.text
    yield server
    server.stop()


def _client(served: PrivacyServed, who: str, scope: str = "user/*.rs") -> httpx.Client:
    return served.client(scope, sub=who, **CALLERS[who])


def _ids(body: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for entry in body.get("entry", []):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") != "OperationOutcome":
            found.add(str(resource.get("id")))
    return found


def _subsetted(body: dict[str, Any]) -> bool:
    return any(t.get("code") == "SUBSETTED" for t in body.get("meta", {}).get("tag", []))


@pytest.mark.parametrize("who", sorted(WITHHELD))
def test_no_withheld_resource_reaches_the_caller(served: PrivacyServed, who: str) -> None:
    withheld = WITHHELD[who]
    seen: set[str] = set()
    with _client(served, who) as client:
        for body in DATA:
            if body["resourceType"] not in ("Patient", "Observation"):
                continue
            for path in (
                f"/{body['resourceType']}/{body['id']}",
                f"/{body['resourceType']}/{body['id']}/_history/1",
            ):
                response = client.get(path)
                assert response.status_code in (200, 403), (path, response.text)
                if response.status_code == 200:
                    seen.add(response.json()["id"])
                else:
                    assert response.json()["resourceType"] == "OperationOutcome"
        for path, params in SEARCHES:
            response = client.get(f"/{path}", params=params)
            assert response.status_code in (200, 403), (path, response.text)
            if response.status_code == 200:
                seen |= _ids(response.json())
    assert not seen & withheld, f"{who} received withheld {sorted(seen & withheld)}"
    everything = {b["id"] for b in DATA if b["resourceType"] in ("Patient", "Observation")}
    assert everything - withheld <= seen, f"{who} missed {sorted(everything - withheld - seen)}"


def test_a_search_that_withheld_something_says_so(served: PrivacyServed) -> None:
    with _client(served, "doc2") as client:
        withheld = client.get("/Observation", params={"subject": "Patient/a"}).json()
        complete = client.get("/Observation", params={"subject": "Patient/b"}).json()
    assert withheld.get("total") == 0 and _subsetted(withheld)
    assert _ids(complete) == {"b-obs"} and not _subsetted(complete)


def test_a_withheld_resource_cannot_be_probed_through_has(served: PrivacyServed) -> None:
    with _client(served, "doc1") as client:
        probe = f"{CONF}|V"
        found = client.get("/Patient", params={"_has:Observation:subject:_security": probe})
        chained = client.get("/Patient", params={"_has:Observation:subject:_id": "a-vip"})
    assert _ids(found.json()) == set() and _ids(chained.json()) == set()


def test_a_consent_written_later_applies_at_once(served: PrivacyServed) -> None:
    with served.client("system/*.*") as admin, _client(served, "doc1") as client:
        assert client.get("/Observation/b-obs").status_code == 200
        deny = {"actor": _actor("Practitioner/doc1")}
        assert admin.put("/Consent/cdoc1", json=_consent("cdoc1", "b", deny)).status_code == 201
        try:
            assert client.get("/Observation/b-obs").status_code == 403
            assert "b-obs" not in _ids(client.get("/Observation").json())
        finally:
            assert admin.delete("/Consent/cdoc1").status_code in (200, 204)
        assert client.get("/Observation/b-obs").status_code == 200


def _identifiers(patient: dict[str, Any]) -> dict[str, Any]:
    return {i["type"]["coding"][0]["code"]: i.get("value") for i in patient["identifier"]}


def test_front_desk_sees_the_last_four_digits_of_an_ssn(served: PrivacyServed) -> None:
    with _client(served, "front-desk", "user/Patient.rs") as client:
        read = client.get("/Patient/a").json()
        found = client.get("/Patient", params={"_id": "a"}).json()["entry"][0]["resource"]
    for patient in (read, found):
        assert _identifiers(patient) == {"SS": "***-**-6789", "MR": "MRN-a"}
        assert {"code": "MASKED"}.items() <= patient["meta"]["security"][0].items()
    with _client(served, "doc1") as client:
        assert _identifiers(client.get("/Patient/a").json())["SS"] == "123-45-6789"


def test_analysts_see_no_identifier(served: PrivacyServed) -> None:
    with _client(served, "analyst", "user/Patient.rs") as client:
        bodies = [client.get("/Patient/a").json()]
        bodies += [e["resource"] for e in client.get("/Patient").json()["entry"]]
        bodies += [e["resource"] for e in client.get("/Patient/a/_history").json()["entry"]]
    for patient in bodies:
        assert _identifiers(patient) == {"SS": None, "MR": None}
        assert "123-45-6789" not in str(patient) and "MRN-" not in str(patient)


def test_front_desk_writes_never_reveal_or_overwrite_the_ssn(served: PrivacyServed) -> None:
    with _client(served, "front-desk", "user/Patient.cruds") as client:
        masked = client.get("/Patient/b").json()
        refused = client.put("/Patient/b", json=masked)
        patch = [{"op": "replace", "path": "/name/0/family", "value": "Beta"}]
        headers = {"Content-Type": "application/json-patch+json"}
        patched = client.patch("/Patient/b", content=orjson.dumps(patch), headers=headers)
    assert refused.status_code == 400 and "MASKED" in refused.text
    assert patched.status_code == 200, patched.text
    assert _identifiers(patched.json())["SS"] == "***-**-4321"
    with _client(served, "doc1") as client:
        assert _identifiers(client.get("/Patient/b").json())["SS"] == "987-65-4321"
