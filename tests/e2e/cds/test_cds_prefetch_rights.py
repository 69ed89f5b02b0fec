"""With FHIR authorization on, prefetch fetched from this server has the rights of the
client's `fhirAuthorization` token, checked as the FHIR API checks it."""

from __future__ import annotations

import pytest

from tests.e2e.cds.test_cds_protocol import A1C, WITH
from tests.support.cds_services import Hba1cService


@pytest.fixture(scope="module")
def engine() -> str:
    return "sqlite"


@pytest.fixture(scope="module")
def stack(cds_stack_factory):
    return cds_stack_factory([Hba1cService()], [WITH, A1C], auth="on")


def _call(stack, authorization):
    return stack.client.call_service(
        "test-hba1c",
        hook="patient-view",
        patient_id="with-a1c",
        prefetch=False,
        fhir_server=stack.server.base,
        fhir_authorization=authorization,
    )


def _authorization(token: str) -> dict[str, str]:
    return {"access_token": token, "token_type": "Bearer", "scope": "system/*.rs"}


def test_a_token_with_the_rights_gets_the_data(stack) -> None:
    token = stack.fhir_token("system/Patient.rs system/Observation.rs")
    answer = _call(stack, _authorization(token))
    assert answer.status_code == 200, answer.text
    assert answer.json()["cards"][0]["summary"] == "HbA1c on file: 6.9 %"


def test_a_token_without_the_rights_is_412(stack) -> None:
    answer = _call(stack, _authorization(stack.fhir_token("system/Patient.rs")))
    assert answer.status_code == 412
    assert "Observation" in answer.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("authorization", [None, _authorization("not-a-token")])
def test_no_or_a_bad_token_is_412(stack, authorization) -> None:
    answer = _call(stack, authorization)
    assert answer.status_code == 412
    assert "fhirAuthorization is refused" in answer.json()["issue"][0]["diagnostics"]
