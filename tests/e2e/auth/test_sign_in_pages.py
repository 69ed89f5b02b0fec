"""The sign-in pages over real HTTP: authorize -> login -> pickers -> consent -> redirect,
CSRF refusals, throttling, roles on the consent screen, the EHR-launch entry.

The authorize step's protocol side is a fake (tests/support/fake_auth_server.py) that
records what the pages approved."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.auth_ui_stack import APP_CALLBACK, PASSWORDS, AuthUiStack
from tests.support.form_browser import Browser as FormBrowser


class Browser(FormBrowser):
    stack: AuthUiStack


@pytest.fixture
def browser(stack: AuthUiStack) -> Iterator[Browser]:
    b = Browser(stack)
    yield b
    b.http.close()


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_unknown_client_gets_an_error_page_not_a_redirect(browser: Browser) -> None:
    response = browser.get(
        "/auth/authorize", **browser.stack.authorize_params("openid", client_id="nobody")
    )
    assert response.status_code == 400
    assert "Unknown client" in response.text
    assert "location" not in response.headers


def test_an_invalid_request_goes_back_to_the_redirect_uri(browser: Browser) -> None:
    params = browser.stack.authorize_params("openid")
    del params["code_challenge"]
    response = browser.get("/auth/authorize", **params)
    assert response.status_code == 302
    assert response.headers["location"].startswith(APP_CALLBACK)
    assert _query(response.headers["location"]) == {
        "error": ["invalid_request"],
        "state": ["st-123"],
    }


def test_authorize_by_post_works_like_get(browser: Browser) -> None:
    response = browser.http.post(
        "/auth/authorize", data=browser.stack.authorize_params("openid fhirUser")
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/auth/login?tx=")


def test_the_session_cookie_is_httponly_samesite_and_scoped(browser: Browser) -> None:
    response = browser.get(browser.start("openid"))
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/auth" in cookie
    assert "secure" not in cookie  # plain HTTP here; TLS is covered by a unit test


def test_standalone_launch_clinician_picks_a_patient_of_their_organization(
    browser: Browser,
) -> None:
    scope = "openid fhirUser launch/patient patient/Observation.rs patient/Patient.r"
    step = browser.sign_in(browser.start(scope), "doc")
    assert step.status_code == 303 and step.headers["location"].startswith("/auth/pick/patient")
    page = browser.get(step.headers["location"])
    assert "Alice Able" in page.text and "Bob Baker" in page.text
    assert "Carol Cole" not in page.text  # Organization/org2: not the clinician's
    tx = browser.field("tx")
    refused = browser.post("/auth/pick/patient", {"tx": tx, "choice": "p3"})
    assert refused.status_code == 400
    chosen = browser.post("/auth/pick/patient", {"tx": tx, "choice": "p1"})
    assert chosen.headers["location"].startswith("/auth/consent")
    consent = browser.get(chosen.headers["location"])
    assert "Read and search observations about the selected patient" in consent.text
    assert "Alice Able" in consent.text
    done = browser.post(
        "/auth/consent", {"tx": tx, "decision": "approve", "scope": ["patient/Patient.r"]}
    )
    assert done.status_code == 303
    query = _query(done.headers["location"])
    assert query["state"] == ["st-123"]
    approval = browser.stack.fake.approvals[query["code"][0]]
    # patient/Observation.rs was unticked; the fixed scopes stay
    assert approval.scopes == ["openid", "fhirUser", "launch/patient", "patient/Patient.r"]
    assert approval.context == {"patient": "p1"}
    assert (approval.fhir_user, approval.role) == ("Practitioner/pr1", "clinician")


def test_encounter_picker_after_the_patient(browser: Browser) -> None:
    step = browser.sign_in(
        browser.start("launch/patient launch/encounter user/Encounter.rs"), "admin"
    )
    browser.get(step.headers["location"])
    tx = browser.field("tx")
    assert "Carol Cole" in browser.page  # an admin is offered every patient
    moved = browser.post("/auth/pick/patient", {"tx": tx, "choice": "p1"})
    assert moved.headers["location"].startswith("/auth/pick/encounter")
    page = browser.get(moved.headers["location"])
    assert page.text.index("Admission") < page.text.index("Check-up")  # latest first
    assert browser.post("/auth/pick/encounter", {"tx": tx, "choice": "nope"}).status_code == 400
    consent = browser.post("/auth/pick/encounter", {"tx": tx, "choice": "e1"})
    assert consent.headers["location"].startswith("/auth/consent")
    browser.get(consent.headers["location"])
    done = browser.post(
        "/auth/consent", {"tx": tx, "decision": "approve", "scope": ["user/Encounter.rs"]}
    )
    approval = browser.stack.fake.approvals[_query(done.headers["location"])["code"][0]]
    assert approval.context == {"patient": "p1", "encounter": "e1"}


def test_forms_without_the_session_csrf_token_are_refused(browser: Browser) -> None:
    first = browser.start("openid patient/Patient.r")
    browser.get(first)
    tx = browser.field("tx")
    no_token = browser.post(
        "/auth/login", {"tx": tx, "username": "doc", "password": PASSWORDS["doc"]}, csrf=False
    )
    assert no_token.status_code == 403
    forged = browser.http.post(
        "/auth/login",
        data={"csrf_token": "x" * 43, "tx": tx, "username": "doc", "password": PASSWORDS["doc"]},
    )
    assert forged.status_code == 403
    # signed in properly, the consent form needs the token too
    browser.get(first)
    signed = browser.post(
        "/auth/login", {"tx": tx, "username": "doc", "password": PASSWORDS["doc"]}
    )
    browser.get(signed.headers["location"])
    approvals = len(browser.stack.fake.approvals)
    refused = browser.post("/auth/consent", {"tx": tx, "decision": "approve"}, csrf=False)
    assert refused.status_code == 403
    assert len(browser.stack.fake.approvals) == approvals


def test_the_csrf_token_of_the_signed_out_session_is_dead_after_sign_in(browser: Browser) -> None:
    first = browser.start("openid")
    browser.get(first)
    old_cookie = browser.http.cookies["fhir_auth_session"]
    old_csrf = browser.field("csrf_token")
    browser.post(
        "/auth/login", {"tx": browser.field("tx"), "username": "doc", "password": PASSWORDS["doc"]}
    )
    assert browser.http.cookies["fhir_auth_session"] != old_cookie  # no session fixation
    stale = browser.http.post("/auth/logout", data={"csrf_token": old_csrf})
    assert stale.status_code == 403


def test_a_wrong_password_is_throttled(browser: Browser) -> None:
    browser.get(browser.start("openid"))
    tx = browser.field("tx")
    for _ in range(3):
        wrong = browser.post(
            "/auth/login", {"tx": tx, "username": "locked", "password": "not-the-password"}
        )
        assert wrong.status_code == 401
        assert "Wrong user name or password" in wrong.text
    right = browser.post(
        "/auth/login", {"tx": tx, "username": "locked", "password": PASSWORDS["locked"]}
    )
    assert right.status_code == 429
    assert "Too many failed sign-ins" in right.text
    assert "fhir_auth_session" in browser.http.cookies  # still the signed-out session
    other = browser.post("/auth/login", {"tx": tx, "username": "doc", "password": PASSWORDS["doc"]})
    assert other.status_code == 303  # the lockout is per name, not everyone's


def test_a_transaction_cannot_be_continued_in_another_browser(
    browser: Browser, stack: AuthUiStack
) -> None:
    first = browser.start("openid")
    browser.get(first)
    other = Browser(stack)
    try:
        assert other.get(first).status_code == 400
        assert "another browser" in other.page
    finally:
        other.http.close()


def test_a_patient_grants_only_patient_scopes_for_their_own_record(browser: Browser) -> None:
    step = browser.sign_in(
        browser.start(
            "openid fhirUser launch/patient patient/*.rs user/Observation.rs patient/*.cud"
        ),
        "pat",
    )
    assert step.headers["location"].startswith("/auth/consent")  # no picker for a patient
    page = browser.get(step.headers["location"])
    refused_part = page.text.split("Not available to your role")[1]
    assert "user/Observation.rs" in refused_part and "patient/*.cud" in refused_part
    tx = browser.field("tx")
    done = browser.post(
        "/auth/consent",
        {
            "tx": tx,
            "decision": "approve",
            "scope": ["patient/*.rs", "user/Observation.rs", "patient/*.cud"],
        },
    )  # a forged tick adds nothing
    approval = browser.stack.fake.approvals[_query(done.headers["location"])["code"][0]]
    assert approval.scopes == ["openid", "fhirUser", "launch/patient", "patient/*.rs"]
    assert approval.context == {"patient": "p1"}


def test_a_related_person_acts_for_their_patient(browser: Browser) -> None:
    step = browser.sign_in(browser.start("launch/patient patient/Observation.rs"), "mum")
    browser.get(step.headers["location"])
    done = browser.post(
        "/auth/consent",
        {"tx": browser.field("tx"), "decision": "approve", "scope": ["patient/Observation.rs"]},
    )
    approval = browser.stack.fake.approvals[_query(done.headers["location"])["code"][0]]
    assert approval.context == {"patient": "p2"}


def test_front_desk_may_not_grant_clinical_data(browser: Browser) -> None:
    step = browser.sign_in(
        browser.start("user/Patient.rs user/Appointment.cruds user/Observation.rs"), "desk"
    )
    browser.get(step.headers["location"])
    done = browser.post(
        "/auth/consent",
        {
            "tx": browser.field("tx"),
            "decision": "approve",
            "scope": ["user/Patient.rs", "user/Appointment.cruds", "user/Observation.rs"],
        },
    )
    approval = browser.stack.fake.approvals[_query(done.headers["location"])["code"][0]]
    assert approval.scopes == ["user/Patient.rs", "user/Appointment.cruds"]


def test_deny_sends_access_denied_back(browser: Browser) -> None:
    step = browser.sign_in(browser.start("openid"), "doc")
    browser.get(step.headers["location"])
    done = browser.post("/auth/consent", {"tx": browser.field("tx"), "decision": "deny"})
    assert _query(done.headers["location"]) == {"error": ["access_denied"], "state": ["st-123"]}


def test_consent_cannot_be_reached_before_signing_in(browser: Browser) -> None:
    first = browser.start("openid")
    tx = _query(first)["tx"][0]
    browser.get(first)
    response = browser.get("/auth/consent", tx=tx)
    assert response.status_code == 400
    assert "not signed in" in response.text


def test_ehr_launch_carries_the_registered_context(browser: Browser) -> None:
    launch = browser.get(
        "/auth/launch",
        app="http://app.test/launch",
        patient="p1",
        encounter="e1",
        need_patient_banner="false",
        fhirContext="DiagnosticReport/dr1",
        intent="reconcile-medications",
    )
    assert launch.status_code == 200 and 'name="username"' in launch.text  # sign in first
    signed = browser.post(
        "/auth/login", {"tx": "", "username": "doc", "password": PASSWORDS["doc"]}
    )
    assert signed.headers["location"].startswith("/auth/launch?")
    confirm = browser.get(signed.headers["location"])
    assert "Alice Able" in confirm.text
    opened = browser.post(
        "/auth/launch",
        {
            k: v
            for k, v in re.findall(
                r'<input type="hidden" name="(\w+)" value="([^"]*)"', confirm.text
            )
            if k != "csrf_token"
        },
    )
    target = opened.headers["location"]
    assert target.startswith("http://app.test/launch?")
    assert _query(target)["iss"] == [browser.stack.base]
    step = browser.get(
        "/auth/authorize",
        **browser.stack.authorize_params(
            "launch openid fhirUser patient/*.rs", launch=_query(target)["launch"][0]
        ),
    )
    consent = browser.get(step.headers["location"])  # signed in: straight to consent
    assert consent.status_code == 303 and consent.headers["location"].startswith("/auth/consent")
    browser.get(consent.headers["location"])
    done = browser.post(
        "/auth/consent",
        {"tx": browser.field("tx"), "decision": "approve", "scope": ["patient/*.rs"]},
    )
    approval = browser.stack.fake.approvals[_query(done.headers["location"])["code"][0]]
    assert approval.context == {
        "patient": "p1",
        "encounter": "e1",
        "need_patient_banner": False,
        "fhirContext": [{"reference": "DiagnosticReport/dr1"}],
        "intent": "reconcile-medications",
    }


def test_a_launch_belongs_to_the_user_who_created_it(browser: Browser, stack: AuthUiStack) -> None:
    browser.get("/auth/launch", app="http://app.test/launch", patient="p1")
    browser.post("/auth/login", {"tx": "", "username": "doc", "password": PASSWORDS["doc"]})
    confirm = browser.get("/auth/launch", app="http://app.test/launch", patient="p1")
    opened = browser.post("/auth/launch", {"app": "http://app.test/launch", "patient": "p1"})
    launch_id = _query(opened.headers["location"])["launch"][0]
    assert confirm.status_code == 200
    other = Browser(stack)
    try:
        step = other.sign_in(other.start("launch patient/*.rs", launch=launch_id), "nurse")
        assert other.get(step.headers["location"]).status_code == 400
        assert "belongs to another user" in other.page
    finally:
        other.http.close()


def test_a_patient_user_cannot_create_a_launch(browser: Browser) -> None:
    browser.get("/auth/launch", app="http://app.test/launch", patient="p3")
    browser.post("/auth/login", {"tx": "", "username": "pat", "password": PASSWORDS["pat"]})
    response = browser.get("/auth/launch", app="http://app.test/launch", patient="p3")
    assert response.status_code == 400
    assert "standalone launch" in response.text


def test_launch_parameters_are_checked(browser: Browser) -> None:
    browser.get("/auth/launch", app="http://app.test/launch")
    browser.post("/auth/login", {"tx": "", "username": "doc", "password": PASSWORDS["doc"]})
    bad_app = browser.get("/auth/launch", app="javascript:alert(1)")
    assert bad_app.status_code == 400 and "app must be an absolute http(s) URL" in bad_app.text
    bad_banner = browser.get("/auth/launch", app="http://app.test/l", need_patient_banner="yes")
    assert bad_banner.status_code == 400 and "need_patient_banner" in bad_banner.text


def test_picker_and_launch_forms_need_the_csrf_token_too(browser: Browser) -> None:
    step = browser.sign_in(browser.start("launch/patient patient/*.rs"), "doc")
    browser.get(step.headers["location"])
    tx = browser.field("tx")
    assert (
        browser.post("/auth/pick/patient", {"tx": tx, "choice": "p1"}, csrf=False).status_code
        == 403
    )
    launch = browser.post(
        "/auth/launch", {"app": "http://app.test/launch", "patient": "p1"}, csrf=False
    )
    assert launch.status_code == 403 and "location" not in launch.headers
    browser.get("/auth/pick/patient", tx=tx)  # nothing was picked: still the picker
    assert "Choose a patient" in browser.page
