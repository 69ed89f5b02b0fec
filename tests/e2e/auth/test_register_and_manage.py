"""The `register` and `manage` URLs that discovery advertises, over real HTTP against the
app with authorization on (uvicorn in a thread, SQLite):

- RFC 7591 registration with a token from `fhir-server auth client registration-token`:
  a backend client registers an inline JWKS it generated and gets a system token with a
  private_key_jwt assertion; a secret client gets its secret once and authenticates with
  it; bad metadata is 400 with the RFC's error code; no, a wrong or an expired token is 401;
- the app-management page in headless Chromium (screenshots in the test's tmp dir): a user
  signs in, authorizes an app through the real authorize, consent and token endpoints, sees
  it listed and revokes it; the app's refresh token is then `invalid_grant` and its access
  token inactive; a revoke without the session's CSRF token is refused and changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from fhir_server.api.app import create_app
from fhir_server.auth.clients import new_client
from fhir_server.auth.store import AuthStore, SQLiteDocuments
from fhir_server.auth.users import auth_database_path, new_user
from fhir_server.auth.users_sqlite import SQLiteUserStore
from fhir_server.settings import Settings
from tests.support.server import free_port
from tests.support.threaded_app import ThreadedApp

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Route

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CALLBACK = "http://app.test/callback"
APP_SCOPES = "openid fhirUser user/Patient.rs offline_access"
PASSWORD = "doc-secret-pw"


class Stack:
    """The app with authorization on; user `doc`, a public app and a resource server."""

    def __init__(self, tmp: Path) -> None:
        port = free_port()
        self.origin = f"http://127.0.0.1:{port}"
        self.base = self.origin + "/fhir"
        self.database = tmp / "fhir.db"
        self.settings = Settings(database=str(self.database), base_url=self.base, auth="on")
        self.store = AuthStore(SQLiteDocuments(auth_database_path(self.settings)))
        self.server = ThreadedApp(create_app(self.settings), port)

    def start(self) -> Stack:
        with ThreadPoolExecutor(1) as pool:  # the caller's thread may run Playwright's loop
            pool.submit(asyncio.run, self._add_user()).result()
        self.store.open()
        self.app_id = self._client("Growth Chart", "public", [CALLBACK], APP_SCOPES)[0]
        self.rs_id, self.rs_secret = self._client(
            "Resource server", "symmetric", ["https://rs.test/cb"], "openid"
        )
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.store.close()

    async def _add_user(self) -> None:
        users = SQLiteUserStore(auth_database_path(self.settings))
        await users.open()
        try:
            await users.add_user(new_user("doc", PASSWORD, "clinician", "Practitioner/pr1"))
        finally:
            await users.close()

    def _client(self, name: str, kind: str, uris: list[str], scopes: str) -> tuple[str, str | None]:
        doc, secret = new_client(name=name, kind=kind, redirect_uris=uris, scopes=scopes.split())
        self.store.add_client(doc)
        return doc["id"], secret

    def oauth_uris(self) -> dict[str, str]:
        """The CapabilityStatement's oauth-uris: what a client follows."""
        meta = httpx.get(self.base + "/metadata", timeout=30).json()
        extension = meta["rest"][0]["security"]["extension"][0]["extension"]
        return {e["url"]: e["valueUri"] for e in extension}

    def post(self, endpoint: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.origin}/auth/{endpoint}", data=data, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("register-manage")).start()
    yield running
    running.stop()


def registration_token(stack: Stack, *args: str) -> str:
    """What an operator runs: `fhir-server auth client registration-token`."""
    command = [
        str(Path(sys.executable).parent / "fhir-server"),
        "auth",
        "client",
        "registration-token",
        *args,
    ]
    done = subprocess.run(
        command,
        env={**os.environ, "FHIR_DATABASE": str(stack.database)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def admin_token(stack: Stack) -> str:
    return registration_token(stack, "--expires-in", "600")


def register(stack: Stack, metadata: dict[str, Any], token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(stack.oauth_uris()["register"], json=metadata, headers=headers, timeout=60)


# -- dynamic registration -----------------------------------------------------------------


def test_a_backend_client_registers_its_jwks_and_gets_a_system_token(
    stack: Stack, admin_token: str
) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "registered-1"})
    reply = register(
        stack,
        {
            "client_name": "Nightly export",
            "scope": "system/Patient.rs",
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"],
            "jwks": {"keys": [key.as_dict(private=False)]},
        },
        admin_token,
    )
    assert reply.status_code == 201, reply.text
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert "client_secret" not in body
    assert body["grant_types"] == ["client_credentials"]
    client_id = body["client_id"]
    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "RS384", "kid": key.kid, "typ": "JWT"},
        {
            "iss": client_id,
            "sub": client_id,
            "aud": f"{stack.origin}/auth/token",
            "exp": now + 240,
            "iat": now,
            "jti": uuid.uuid4().hex,
        },
        key,
        algorithms=["RS384"],
    )
    token = stack.post(
        "token",
        {
            "grant_type": "client_credentials",
            "scope": "system/Patient.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "system/Patient.rs"
    search = httpx.get(
        stack.base + "/Patient",
        timeout=30,
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
    assert search.status_code == 200 and search.json()["resourceType"] == "Bundle"


def test_a_secret_client_gets_its_secret_once_and_authenticates_with_it(
    stack: Stack, admin_token: str
) -> None:
    reply = register(
        stack,
        {
            "client_name": "Reports",
            "redirect_uris": ["https://r.test/cb"],
            "scope": "launch/patient patient/*.rs",
        },
        admin_token,
    )
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["token_endpoint_auth_method"] == "client_secret_basic"  # RFC 7591's default
    secret = body["client_secret"]
    assert secret not in str(stack.store.get_client(body["client_id"]))  # stored hashed
    asked = stack.post("introspect", {"token": "unknown"}, auth=(body["client_id"], secret))
    assert (asked.status_code, asked.json()) == (200, {"active": False})
    wrong = stack.post("introspect", {"token": "unknown"}, auth=(body["client_id"], "nope"))
    assert wrong.status_code == 401


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"redirect_uris": ["https://r.test/cb#fragment"]}, "invalid_redirect_uri"),
        ({"token_endpoint_auth_method": "tls_client_auth"}, "invalid_client_metadata"),
        ({"scope": None}, "invalid_client_metadata"),
    ],
)
def test_bad_metadata_is_400_with_the_rfc_7591_error(
    stack: Stack, admin_token: str, change: dict[str, Any], error: str
) -> None:
    metadata = {
        "client_name": "Bad",
        "redirect_uris": ["https://r.test/cb"],
        "scope": "patient/*.rs",
        **change,
    }
    reply = register(stack, {k: v for k, v in metadata.items() if v is not None}, admin_token)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"] == error


@pytest.mark.parametrize("token", [None, "wrong", "expired"])
def test_registration_needs_a_valid_registration_token(
    stack: Stack, admin_token: str, token: str | None
) -> None:
    if token == "expired":
        token = secrets.token_urlsafe(16)
        stack.store.save_registration_token(token, time.time() - 1)
    before = len(stack.store.list_clients())
    reply = register(
        stack,
        {"client_name": "Sneaky", "redirect_uris": ["https://s.test/cb"], "scope": "user/*.cruds"},
        token,
    )
    assert reply.status_code == 401
    challenge = reply.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="register"')
    assert ('error="invalid_token"' in challenge) is (token is not None)  # RFC 6750 §3.1
    assert reply.json()["error"] == "invalid_token"
    assert len(stack.store.list_clients()) == before


# -- the management page in the browser ----------------------------------------------------


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


def _shot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000


def _manage_url(stack: Stack) -> str:
    url = httpx.get(stack.base + "/.well-known/smart-configuration", timeout=30).json()[
        "management_endpoint"
    ]
    assert url == stack.oauth_uris()["manage"]
    return str(url)


def _sign_in_to_manage(page: Page, stack: Stack) -> None:
    page.goto(_manage_url(stack))
    assert urlsplit(page.url).path == "/auth/login"  # no session yet: sign in first
    page.get_by_label("User name").fill("doc")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Apps with access"


def _authorize_app(page: Page, stack: Stack) -> dict[str, Any]:
    """The signed-in user approves the app; the app redeems the code (PKCE)."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    page.goto(
        f"{stack.origin}/auth/authorize?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": stack.app_id,
                "redirect_uri": CALLBACK,
                "scope": APP_SCOPES,
                "state": "st-1",
                "aud": stack.base,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
    )
    assert page.get_by_role("heading", level=1).inner_text() == "Allow access?"
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(CALLBACK + "?*")
    code = parse_qs(urlsplit(page.url).query)["code"][0]
    reply = stack.post(
        "token",
        {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": stack.app_id,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
    )
    assert reply.status_code == 200, reply.text
    tokens: dict[str, Any] = reply.json()
    return tokens


def _refresh(stack: Stack, refresh_token: str) -> httpx.Response:
    return stack.post("token", {"grant_type": "refresh_token", "refresh_token": refresh_token})


def test_a_user_sees_the_app_they_authorized_and_revokes_it(
    page: Page, stack: Stack, tmp_path: Path
) -> None:
    _sign_in_to_manage(page, stack)
    assert page.get_by_text("No app has access through you.").is_visible()
    _shot(page, tmp_path, "manage-empty")
    first = _authorize_app(page, stack)
    refreshed = _refresh(stack, first["refresh_token"])  # the app works until revoked
    assert refreshed.status_code == 200, refreshed.text
    tokens = refreshed.json()

    page.goto(_manage_url(stack))
    assert page.get_by_role("heading", level=2).all_inner_texts() == ["Growth Chart"]
    assert page.get_by_text("Read and search patients that you can access").is_visible()
    assert page.get_by_text("Keep access after you close the app, until you revoke it").is_visible()
    _shot(page, tmp_path, "manage")
    page.get_by_role("button", name="Revoke Growth Chart").click()

    assert page.get_by_role("status").inner_text() == "Access for Growth Chart was revoked."
    assert page.get_by_role("heading", level=2).count() == 0
    _shot(page, tmp_path, "manage-revoked")
    again = _refresh(stack, tokens["refresh_token"])
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    asked = stack.post(
        "introspect", {"token": tokens["access_token"]}, auth=(stack.rs_id, stack.rs_secret or "")
    )
    assert asked.json() == {"active": False}


def test_a_revoke_without_the_csrf_token_is_refused(
    page: Page, stack: Stack, tmp_path: Path
) -> None:
    _sign_in_to_manage(page, stack)
    tokens = _authorize_app(page, stack)
    page.goto(_manage_url(stack))
    page.locator("input[name=csrf_token]").first.evaluate("input => input.value = 'forged'")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Revoke Growth Chart").click()
    assert posted.value.status == 403
    assert page.get_by_role("heading", level=1).inner_text() == "Form refused"
    _shot(page, tmp_path, "manage-csrf-refused")
    still = _refresh(stack, tokens["refresh_token"])
    assert still.status_code == 200, still.text
