"""Unmodified SMART client libraries against the real server (`fhir-server serve`, with
authorization on) over real HTTP:

- the JS fhirclient 2.6.3 in headless Chromium, from a small app page served by the tests
  (tests/vectors/smart_app/): an EHR launch (through `/auth/launch`) and a standalone
  launch (patient picker), each reading the patient, refreshing the token (the library
  sends no client_id then) and reading again;
- the Python fhirclient 4.4: a standalone launch with PKCE, then a refresh.

Clients and users are registered with the CLI (`fhir-server auth client add`, `auth user
add --password-stdin`), as an operator would. The JS client and, when missing, npm are
installed by scripts/install_fhirclient_js.sh (npm needs root; else the JS tests skip and
say why); chromium by scripts/install_browser.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.support.auth_ui_stack import PASSWORDS, RESOURCES, USERS
from tests.support.form_browser import Browser
from tests.support.server import ServerProcess
from tests.support.static_site import StaticSite

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

ROOT = Path(__file__).resolve().parents[3]
APP_FOLDER = ROOT / "tests" / "vectors" / "smart_app"
SCOPES = (
    "openid fhirUser launch launch/patient launch/encounter patient/*.rs user/*.rs offline_access"
)
PY_CALLBACK = "http://127.0.0.1:9/callback"  # never fetched: the test reads the redirect


def fhir_server(*args: str, database: Path, stdin: str = "") -> str:
    command = [str(Path(sys.executable).parent / "fhir-server"), *args]
    env = {**os.environ, "FHIR_DATABASE": str(database)}
    done = subprocess.run(
        command, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def app_site() -> Iterator[StaticSite]:
    if shutil.which("npm") is None and os.geteuid() != 0:
        pytest.skip(
            "npm is missing: run scripts/install_fhirclient_js.sh as root (it installs "
            "npm and the JS fhirclient)"
        )
    bundle = subprocess.run(
        ["sh", str(ROOT / "scripts" / "install_fhirclient_js.sh")],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    site = StaticSite(APP_FOLDER, {"fhir-client.js": Path(bundle.stdout.strip())}).start()
    yield site
    site.stop()


class RealStack:
    """`fhir-server serve` with authorization on, seeded, with the Python app's client."""

    def __init__(self, tmp: Path) -> None:
        self.database = tmp / "fhir.db"
        data = tmp / "seed.ndjson"
        data.write_text("\n".join(json.dumps(r) for r in RESOURCES) + "\n")
        fhir_server("load", str(data), database=self.database)
        for name, (role, fhir_user) in USERS.items():
            fhir_user_args = ["--fhir-user", fhir_user] if fhir_user else []
            fhir_server(
                "auth",
                "user",
                "add",
                name,
                "--role",
                role,
                *fhir_user_args,
                "--password-stdin",
                database=self.database,
                stdin=PASSWORDS[name],
            )
        self.py_client = self.client("Python test app", PY_CALLBACK)
        self.server = ServerProcess(self.database, FHIR_AUTH="on").start()
        self.origin = f"http://127.0.0.1:{self.server.port}"
        self.base = self.server.base

    def client(self, name: str, redirect_uri: str) -> str:
        """A public client registered with the CLI (the running server sees it at once)."""
        out = fhir_server(
            "auth",
            "client",
            "add",
            "--name",
            name,
            "--redirect-uri",
            redirect_uri,
            "--public",
            "--scopes",
            SCOPES,
            database=self.database,
        )
        return out.split()[-1]

    def authorize_params(self, scope: str, **extra: str) -> dict[str, str]:
        raise NotImplementedError("the Python fhirclient builds its own authorize request")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealStack]:
    stack = RealStack(tmp_path_factory.mktemp("smart-clients"))
    yield stack
    stack.server.stop()


@pytest.fixture(scope="module")
def js_client(real: RealStack, app_site: StaticSite) -> str:
    """The JS test app's client: its redirect URI is on the app site's origin."""
    return real.client("JS test app", f"{app_site.origin}/index.html")


@pytest.fixture
def page(browser_context: BrowserContext) -> Iterator[Page]:
    browser_context.clear_cookies()
    page = browser_context.new_page()
    yield page
    page.close()


def _sign_in(page: Page, user: str) -> None:
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()


def _result(page: Page) -> dict[str, Any]:
    page.wait_for_function(
        # null-safe: while the launch redirects, a page without these elements is shown
        # (a predicate that throws fails the wait at once instead of waiting)
        "document.getElementById('result')?.textContent || "
        "document.getElementById('error')?.textContent",
        timeout=60_000,
    )
    error = page.locator("#error").inner_text()
    assert not error, error
    result: dict[str, Any] = json.loads(page.locator("#result").inner_text())
    return result


def _token_requests(page: Page) -> list[dict[str, list[str]]]:
    posted: list[dict[str, list[str]]] = []
    page.on(
        "request",
        lambda request: (
            posted.append(parse_qs(request.post_data or ""))
            if request.method == "POST" and request.url.endswith("/auth/token")
            else None
        ),
    )
    return posted


def test_js_fhirclient_standalone_launch_and_refresh(
    page: Page, real: RealStack, app_site: StaticSite, js_client: str, tmp_path: Path
) -> None:
    posted = _token_requests(page)
    page.goto(
        f"{app_site.origin}/launch.html?"
        + urlencode(
            {
                "client_id": js_client,
                "scope": "openid fhirUser launch/patient patient/*.rs offline_access",
                "fhir": real.base,
            }
        )
    )
    _sign_in(page, "doc")
    page.get_by_label("Alice Able").check()
    page.get_by_role("button", name="Continue").click()
    page.screenshot(path=str(tmp_path / "js-standalone-consent.png"), full_page=True)
    page.get_by_role("button", name="Allow").click()
    result = _result(page)
    assert result["patient"] == "p1" and result["read"] == "p1"
    assert result["refreshed"] is True and result["readAfterRefresh"] == "p1"
    refreshes = [p for p in posted if p.get("grant_type") == ["refresh_token"]]
    assert len(refreshes) == 1 and "client_id" not in refreshes[0]


def test_js_fhirclient_ehr_launch_and_refresh(
    page: Page, real: RealStack, app_site: StaticSite, js_client: str, tmp_path: Path
) -> None:
    posted = _token_requests(page)
    app = f"{app_site.origin}/launch.html?" + urlencode(
        {"client_id": js_client, "scope": "launch openid fhirUser patient/*.rs offline_access"}
    )
    page.goto(
        f"{real.origin}/auth/launch?"
        + urlencode(
            {"app": app, "patient": "p1", "encounter": "e1", "need_patient_banner": "false"}
        )
    )
    _sign_in(page, "doc")
    page.get_by_role("button", name="Launch").click()
    page.get_by_role("button", name="Allow").click()
    result = _result(page)
    page.screenshot(path=str(tmp_path / "js-ehr-app.png"), full_page=True)
    assert (result["patient"], result["encounter"]) == ("p1", "e1")
    assert result["need_patient_banner"] is False
    assert result["refreshed"] is True and result["readAfterRefresh"] == "p1"
    refreshes = [p for p in posted if p.get("grant_type") == ["refresh_token"]]
    assert len(refreshes) == 1 and "client_id" not in refreshes[0]


def test_python_fhirclient_standalone_launch_with_pkce_and_refresh(real: RealStack) -> None:
    from fhirclient import client
    from fhirclient.models.patient import Patient

    smart = client.FHIRClient(
        settings={
            "app_id": real.py_client,
            "api_base": real.base,
            "redirect_uri": PY_CALLBACK,
            "scope": "openid fhirUser launch/patient patient/*.rs offline_access",
        }
    )
    authorize_url = smart.authorize_url
    query = parse_qs(urlsplit(authorize_url).query)
    assert query["code_challenge_method"] == ["S256"]
    browser = Browser(real)
    try:
        step = browser.http.get(authorize_url)
        assert step.status_code == 303
        picked = browser.sign_in(step.headers["location"], "doc")
        browser.get(picked.headers["location"])
        consent = browser.post("/auth/pick/patient", {"tx": browser.field("tx"), "choice": "p1"})
        browser.get(consent.headers["location"])
        done = browser.post(
            "/auth/consent",
            {
                "tx": browser.field("tx"),
                "decision": "approve",
                "scope": ["patient/*.rs", "offline_access"],
            },
        )
    finally:
        browser.http.close()
    callback = done.headers["location"]
    assert callback.startswith(PY_CALLBACK)
    smart.handle_callback(callback)
    assert smart.patient_id == "p1"
    assert Patient.read("p1", smart.server).id == "p1"
    old_token = smart.server.auth.access_token
    assert smart.reauthorize()
    assert smart.server.auth.access_token != old_token
    assert Patient.read("p1", smart.server).id == "p1"
