"""CDS Hooks over real HTTP: a sandbox-like client (ES384 JWT with jku, prefetch resolved
with POST [type]/_search, feedback) against the server with small test services."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.cds_client import cds_cli
from tests.support.cds_services import (
    BrokenService,
    Hba1cService,
    OrderSignService,
    UnknownAppService,
)

WITH = {"resourceType": "Patient", "id": "with-a1c", "gender": "female"}
WITHOUT = {"resourceType": "Patient", "id": "without-a1c", "gender": "male"}
A1C = {
    "resourceType": "Observation",
    "id": "a1c-1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
    "subject": {"reference": "Patient/with-a1c"},
    "valueQuantity": {"value": 6.9, "unit": "%"},
}
DATA = [WITH, WITHOUT, A1C]


@pytest.fixture(scope="module")
def hba1c() -> Hba1cService:
    return Hba1cService()


@pytest.fixture(scope="module")
def stack(cds_stack_factory, hba1c):
    services = [hba1c, BrokenService(), UnknownAppService(), OrderSignService()]
    return cds_stack_factory(services, DATA)


def test_discovery_lists_each_service_with_its_prefetch(stack) -> None:
    answer = stack.client.discovery()
    assert answer.status_code == 200
    services = {s["id"]: s for s in answer.json()["services"]}
    assert set(services) == {"test-hba1c", "test-broken", "test-unknown-app", "test-order-sign"}
    assert services["test-hba1c"]["hook"] == "patient-view"
    assert services["test-hba1c"]["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    assert "prefetch" not in services["test-order-sign"]  # empty: left out, never {}


def test_client_prefetch_gives_the_band_for_patients_with_and_without_the_input(stack) -> None:
    have = stack.client.call_service("test-hba1c", patient_id="with-a1c")
    lack = stack.client.call_service("test-hba1c", patient_id="without-a1c")
    assert have.status_code == 200, have.text
    assert [c["summary"] for c in have.json()["cards"]] == ["HbA1c on file: 6.9 %"]
    card = lack.json()["cards"][0]
    assert (card["indicator"], card["selectionBehavior"]) == ("warning", "at-most-one")
    assert card["overrideReasons"][0]["display"] == "Not relevant for this patient"


def test_missing_prefetch_is_fetched_from_this_server(stack, hba1c) -> None:
    answer = stack.client.call_service(
        "test-hba1c", patient_id="with-a1c", prefetch=False, fhir_server=stack.server.base
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["cards"][0]["summary"] == "HbA1c on file: 6.9 %"
    assert hba1c.calls[-1].prefetch["patient"]["id"] == "with-a1c"


def test_an_operation_outcome_or_absent_key_is_fetched_and_null_means_no_data(stack, hba1c) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x"}]}
    answer = stack.client.call_service(
        "test-hba1c",
        patient_id="with-a1c",
        prefetch={"patient": outcome},  # hba1c absent
        fhir_server=stack.server.base,
    )
    assert answer.status_code == 200, answer.text
    assert hba1c.calls[-1].prefetch["patient"]["id"] == "with-a1c"
    assert hba1c.calls[-1].prefetch["hba1c"]["resourceType"] == "Bundle"
    nothing = stack.client.call_service(
        "test-hba1c", patient_id="with-a1c", prefetch={"patient": None, "hba1c": None}
    )
    assert nothing.status_code == 200 and nothing.json() == {"cards": []}
    assert hba1c.calls[-1].prefetch == {"patient": None, "hba1c": None}


def test_a_missing_patient_read_is_none_not_an_error(stack, hba1c) -> None:
    answer = stack.client.call_service(
        "test-hba1c", patient_id="nobody", prefetch=False, fhir_server=stack.server.base
    )
    assert answer.status_code == 200, answer.text
    assert hba1c.calls[-1].prefetch["patient"] is None


def test_412_when_prefetch_cannot_be_had(stack) -> None:
    nowhere = stack.client.call_service("test-hba1c", patient_id="with-a1c", prefetch=False)
    assert nowhere.status_code == 412
    assert "fhirServer" in nowhere.json()["issue"][0]["diagnostics"]
    other = stack.client.call_service(
        "test-hba1c",
        patient_id="with-a1c",
        prefetch=False,
        fhir_server="http://127.0.0.1:9/fhir",
        fhir_authorization={"access_token": "t", "token_type": "Bearer", "scope": "x"},
    )
    assert other.status_code == 412
    assert "not one registered" in other.json()["issue"][0]["diagnostics"]


def test_context_values_are_encoded_into_prefetch_queries(stack, hba1c) -> None:
    """A patientId cannot add a search parameter: it is a FHIR id (400), and were it put in a
    query it would be percent-encoded."""
    answer = stack.client.call_service(
        "test-hba1c", patient_id="with-a1c&code=x", prefetch=False, fhir_server=stack.server.base
    )
    assert answer.status_code == 400
    assert "patientId" in answer.json()["issue"][0]["diagnostics"]


def test_feedback_is_stored_and_listed_by_service_and_outcome(stack) -> None:
    card = stack.client.call_service("test-hba1c", patient_id="without-a1c").json()["cards"][0]
    accepted = stack.client.feedback("test-hba1c", card, "accepted")
    reason = {"reason": {"code": "not-relevant", "system": "http://example.org/cds-override"}}
    overridden = stack.client.feedback(
        "test-hba1c", card, "overridden", overrideReason={**reason, "userComment": "seen"}
    )
    assert (accepted.status_code, overridden.status_code) == (200, 200), overridden.text
    listed = cds_cli(
        stack.database, "feedback", "list", "--service", "test-hba1c", "--outcome", "overridden"
    )
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["outcome"] for r in rows] == ["overridden"]
    assert rows[0]["overrideReason"]["reason"]["code"] == "not-relevant"
    assert rows[0]["card"] == card["uuid"] and rows[0]["client"] == stack.client.iss
    every = cds_cli(stack.database, "feedback", "list", "--service", "test-hba1c").stdout
    assert len(every.splitlines()) == 2


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("not json", "not JSON"),
        ({"hook": "nope", "hookInstance": "1", "context": {}}, "unknown hook"),
        ({"hook": "order-sign", "hookInstance": "1", "context": {}}, "answers patient-view"),
        ({"hook": "patient-view", "context": {}}, "hookInstance"),
        ({"hook": "patient-view", "hookInstance": "1"}, "context is required"),
        ({"hook": "patient-view", "hookInstance": "1", "context": {"userId": 5}}, "userId"),
        (
            {"hook": "patient-view", "hookInstance": "1", "context": {"userId": "Practitioner/1"}},
            "patientId",
        ),
    ],
)
def test_bad_requests_get_400_saying_what_is_wrong(stack, body: Any, why: str) -> None:
    url = f"{stack.root}/cds-services/test-hba1c"
    content = body if isinstance(body, str) else json.dumps(body)
    answer = stack.client.http.post(url, content=content, headers=stack.client.headers(url))
    assert answer.status_code == 400
    assert why in answer.json()["issue"][0]["diagnostics"]


def test_order_hooks_need_their_context(stack) -> None:
    ok = stack.client.call_service(
        "test-order-sign",
        patient_id="with-a1c",
        context={"draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{}]}},
    )
    assert ok.status_code == 200 and ok.json()["cards"][0]["summary"] == "1 draft orders"
    bad = stack.client.call_service(
        "test-order-sign", patient_id="with-a1c", context={"draftOrders": []}
    )
    assert bad.status_code == 400 and "draftOrders" in bad.json()["issue"][0]["diagnostics"]


def test_unknown_service_is_404(stack) -> None:
    url = f"{stack.root}/cds-services/no-such"
    body = json.dumps({"hook": "patient-view", "hookInstance": "1", "context": {}})
    answer = stack.client.http.post(url, content=body, headers=stack.client.headers(url))
    assert answer.status_code == 404


def test_a_failing_service_is_a_500_without_its_details(stack) -> None:
    answer = stack.client.call_service("test-broken", patient_id="with-a1c")
    assert answer.status_code == 500
    assert "secret detail" not in answer.text and "Traceback" not in answer.text
    assert "failed" in answer.json()["issue"][0]["diagnostics"]
    assert "secret detail" in stack.server.log.read_text()  # logged for the operator


def test_a_smart_link_to_an_unregistered_app_is_refused(stack) -> None:
    answer = stack.client.call_service("test-unknown-app", patient_id="with-a1c")
    assert answer.status_code == 500
    assert "launches no registered SMART app" in stack.server.log.read_text()


def test_prefetch_from_a_registered_fhir_server_with_its_authorization(stack, hba1c) -> None:
    """A FHIR server registered for the client (here this server under another host name, so
    that it is fetched over HTTP) is asked with the client's fhirAuthorization."""
    other = stack.root.replace("127.0.0.1", "localhost") + "/fhir"
    client = stack.add_client("--fhir-server", other, "--fhir-server", "http://127.0.0.1:9/fhir")
    authorization = {"access_token": "t", "token_type": "Bearer", "scope": "patient/*.rs"}
    answer = client.call_service(
        "test-hba1c",
        hook="patient-view",
        patient_id="with-a1c",
        prefetch=False,
        fhir_server=other,
        fhir_authorization=authorization,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["cards"][0]["summary"] == "HbA1c on file: 6.9 %"
    down = client.call_service(
        "test-hba1c",
        hook="patient-view",
        patient_id="with-a1c",
        prefetch=False,
        fhir_server="http://127.0.0.1:9/fhir",
        fhir_authorization=authorization,
    )
    assert down.status_code == 412
    assert "could not be reached in time" in down.json()["issue"][0]["diagnostics"]
    client.http.close()


def test_a_body_that_is_not_application_json_is_415(stack) -> None:
    url = f"{stack.root}/cds-services/test-hba1c"
    headers = {**stack.client.headers(url), "Content-Type": "text/plain"}
    answer = stack.client.http.post(url, content=b"{}", headers=headers)
    assert answer.status_code == 415
    assert "application/json" in answer.json()["issue"][0]["diagnostics"]
