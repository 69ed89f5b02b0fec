"""The whole authorization-code flow over real HTTP with the real authorization server and
authorization on, as `make run` serves it: no `FHIR_BASE_URL`, so the FHIR base (the
`aud` an app must send) is the one the browser reached the pages at. Authorize, sign in,
pick the patient, consent, exchange the code with PKCE, read with the token; and a
clinician's `user/` token reaches the patients of their organizations only (the default
`FHIR_AUTH_CLINICIAN_SCOPE=organization`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from fhir_server.api.app import create_app
from fhir_server.assembly import open_service
from fhir_server.auth.clients import new_client
from fhir_server.auth.store import AuthStore
from fhir_server.auth.users import auth_database_path, new_user
from fhir_server.auth.users_sqlite import SQLiteUserStore
from fhir_server.context import SYSTEM
from fhir_server.interactions.request import Request
from fhir_server.settings import Settings
from tests.support.auth_ui_stack import PASSWORDS, RESOURCES
from tests.support.form_browser import Browser
from tests.support.server import free_port
from tests.support.threaded_app import ThreadedApp

CALLBACK = "http://127.0.0.1:9/callback"
SCOPE = "openid fhirUser launch/patient patient/*.rs offline_access"
USER_SCOPE = "openid fhirUser user/*.rs"
ENCOUNTER_P3 = {
    "resourceType": "Encounter",
    "id": "e3",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    "subject": {"reference": "Patient/p3"},
}  # p3 is managed by org2


class Stack:
    """The app with authorization on and no configured base URL, one public client, one
    clinician, the sign-in pages' test patients."""

    def __init__(self, tmp: Path) -> None:
        port = free_port()
        self.settings = Settings(database=str(tmp / "fhir.db"), auth="on", port=port)
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self._seed()).result()
        self.app = ThreadedApp(create_app(self.settings), port).start()
        self.origin = self.app.origin
        self.base = f"{self.origin}/fhir"

    async def _seed(self) -> None:
        async with open_service(self.settings) as service:
            for resource in [*RESOURCES, ENCOUNTER_P3]:
                path = f"{resource['resourceType']}/{resource['id']}"
                await service.handle(Request("PUT", path, body=resource, context=SYSTEM))
        users = SQLiteUserStore(auth_database_path(self.settings))
        await users.open()
        try:
            await users.add_user(new_user("doc", PASSWORDS["doc"], "clinician", "Practitioner/pr1"))
        finally:
            await users.close()
        store = AuthStore.from_settings(self.settings)
        store.open()
        try:
            doc, _ = new_client(
                name="Test app",
                kind="public",
                redirect_uris=[CALLBACK],
                scopes=[*SCOPE.split(), "user/*.rs"],
                client_id="app1",
            )
            store.add_client(doc)
        finally:
            store.close()

    def authorize_params(self, scope: str, **extra: str) -> dict[str, str]:
        return {
            "response_type": "code",
            "client_id": "app1",
            "redirect_uri": CALLBACK,
            "scope": scope,
            "state": "st-1",
            "aud": self.base,
            **extra,
        }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("authorize-flow"))
    yield running
    running.app.stop()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def approved_token(
    stack: Stack, scope: str, ticked: list[str], patient: str | None = None
) -> dict[str, Any]:
    """Sign in as doc, pick `patient` (when the scope asks), allow `ticked`: the token."""
    verifier, challenge = pkce()
    browser = Browser(stack)
    try:
        step = browser.start(scope, code_challenge=challenge, code_challenge_method="S256")
        step = browser.sign_in(step, "doc").headers["location"]
        if patient is not None:
            assert step.startswith("/auth/pick/patient")
            assert "Alice Able" in browser.get(step).text
            step = browser.post(
                "/auth/pick/patient", {"tx": browser.field("tx"), "choice": patient}
            ).headers["location"]
        browser.get(step)
        done = browser.post(
            "/auth/consent", {"tx": browser.field("tx"), "decision": "approve", "scope": ticked}
        )
        callback = done.headers["location"]
        assert callback.startswith(CALLBACK), callback
        code = parse_qs(urlsplit(callback).query)["code"][0]
        token = browser.http.post(
            "/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": CALLBACK,
                "client_id": "app1",
                "code_verifier": verifier,
            },
        )
    finally:
        browser.http.close()
    assert token.status_code == 200, token.text
    body: dict[str, Any] = token.json()
    return body


def test_code_flow_against_the_base_the_browser_reached(stack: Stack) -> None:
    body = approved_token(stack, SCOPE, ["patient/*.rs", "offline_access"], patient="p1")
    assert body["patient"] == "p1" and "refresh_token" in body
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    own = httpx.get(f"{stack.base}/Patient/p1", headers=headers, timeout=30)
    assert own.status_code == 200 and own.json()["id"] == "p1"
    other = httpx.get(f"{stack.base}/Patient/p3", headers=headers, timeout=30)
    assert other.status_code in (403, 404)


def test_a_clinician_reaches_the_patients_of_their_organizations(stack: Stack) -> None:
    body = approved_token(stack, USER_SCOPE, ["user/*.rs"])
    assert body["scope"] == USER_SCOPE
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    found = httpx.get(f"{stack.base}/Patient", headers=headers, timeout=30)
    assert found.status_code == 200, found.text
    assert sorted(e["resource"]["id"] for e in found.json()["entry"]) == ["p1", "p2"]
    assert httpx.get(f"{stack.base}/Patient/p2", headers=headers, timeout=30).status_code == 200
    assert httpx.get(f"{stack.base}/Patient/p3", headers=headers, timeout=30).status_code in (
        403,
        404,
    )
    encounters = httpx.get(f"{stack.base}/Encounter", headers=headers, timeout=30).json()
    assert sorted(e["resource"]["id"] for e in encounters["entry"]) == ["e1", "e2"]


def test_an_aud_for_another_server_goes_back_to_the_app(stack: Stack) -> None:
    _, challenge = pkce()
    params = stack.authorize_params(
        SCOPE,
        aud="http://elsewhere.test/fhir",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    response = httpx.get(f"{stack.origin}/auth/authorize", params=params, timeout=30)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert response.headers["location"].startswith(CALLBACK)
    assert query["error"] == ["invalid_request"] and query["state"] == ["st-1"]
