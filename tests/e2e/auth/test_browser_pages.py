"""The sign-in, picker and consent pages in headless Chromium: a person's clicks through a
standalone launch, the CSRF refusal and the login throttle, with screenshots saved in the
test's tmp dir (`<name>.png`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.support.auth_ui_stack import APP_CALLBACK, PASSWORDS, AuthUiStack

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Route


@pytest.fixture
def page(browser_context: BrowserContext) -> Iterator[Page]:
    browser_context.clear_cookies()
    page = browser_context.new_page()

    def app_callback(route: Route) -> None:  # the app's redirect URI: a page that says so
        route.fulfill(
            status=200,
            content_type="text/html",
            body="<!doctype html><html lang=en><title>App</title><h1>App</h1>",
        )

    page.route("http://app.test/**", app_callback)
    yield page
    page.close()


def _authorize(page: Page, stack: AuthUiStack, scope: str) -> None:
    page.goto(f"{stack.origin}/auth/authorize?{urlencode(stack.authorize_params(scope))}")


def _shot(page: Page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


def _sign_in(page: Page, user: str, password: str) -> None:
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_a_clinician_clicks_through_login_picker_and_consent(
    page: Page, stack: AuthUiStack, tmp_path: Path
) -> None:
    _authorize(
        page,
        stack,
        "openid fhirUser launch/patient patient/Observation.rs patient/Condition.rs offline_access",
    )
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in"
    assert "Growth Chart" in page.content()
    _shot(page, tmp_path, "login")
    _sign_in(page, "doc", PASSWORDS["doc"])

    assert page.get_by_role("heading", level=1).inner_text() == "Choose a patient"
    page.get_by_label("Search by name").fill("Able")
    page.get_by_role("button", name="Search").click()
    assert page.get_by_label("Alice Able").count() == 1
    assert page.get_by_label("Bob Baker").count() == 0
    _shot(page, tmp_path, "patient-picker")
    page.get_by_label("Alice Able").check()
    page.get_by_role("button", name="Continue").click()

    assert page.get_by_role("heading", level=1).inner_text() == "Allow access?"
    conditions = page.get_by_label("Read and search conditions about the selected patient")
    assert conditions.is_checked()
    assert page.get_by_label("Confirm that it is you who signed in").is_disabled()
    conditions.uncheck()
    _shot(page, tmp_path, "consent")
    page.get_by_role("button", name="Allow").click()

    page.wait_for_url(APP_CALLBACK + "?*")
    query = parse_qs(urlsplit(page.url).query)
    assert query["state"] == ["st-123"]
    approval = stack.fake.approvals[query["code"][0]]
    assert approval.scopes == [
        "openid",
        "fhirUser",
        "launch/patient",
        "patient/Observation.rs",
        "offline_access",
    ]
    assert approval.context == {"patient": "p1"}


def test_the_encounter_picker_in_the_browser(
    page: Page, stack: AuthUiStack, tmp_path: Path
) -> None:
    _authorize(page, stack, "launch/patient launch/encounter patient/Encounter.rs")
    _sign_in(page, "nurse", PASSWORDS["nurse"])
    page.get_by_label("Alice Able").check()
    page.get_by_role("button", name="Continue").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Choose an encounter"
    _shot(page, tmp_path, "encounter-picker")
    page.get_by_label("Admission").check()
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(APP_CALLBACK + "?*")
    approval = stack.fake.approvals[parse_qs(urlsplit(page.url).query)["code"][0]]
    assert approval.context == {"patient": "p1", "encounter": "e2"}


def test_a_forged_csrf_token_is_refused_in_the_browser(
    page: Page, stack: AuthUiStack, tmp_path: Path
) -> None:
    _authorize(page, stack, "openid")
    page.locator("input[name=csrf_token]").evaluate("input => input.value = 'forged'")
    _sign_in(page, "doc", PASSWORDS["doc"])
    assert page.get_by_role("heading", level=1).inner_text() == "Form refused"
    _shot(page, tmp_path, "csrf-refused")


def test_a_wrong_password_is_throttled_in_the_browser(
    page: Page, stack: AuthUiStack, tmp_path: Path
) -> None:
    _authorize(page, stack, "openid")
    for _ in range(3):
        _sign_in(page, "locked", "wrong-password")
        assert page.get_by_role("alert").inner_text() == "Wrong user name or password."
    _shot(page, tmp_path, "wrong-password")
    _sign_in(page, "locked", PASSWORDS["locked"])
    assert "Too many failed sign-ins" in page.get_by_role("alert").inner_text()
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in"
    _shot(page, tmp_path, "throttled")
