"""A cookie-keeping HTTP client that fills the sign-in pages' forms as a browser would
(the CSRF token read off the last page), for tests that drive the pages without Chromium."""

from __future__ import annotations

import re
from typing import Protocol

import httpx

from tests.support.auth_ui_stack import PASSWORDS


class Site(Protocol):
    """Where the pages are, and a valid authorize request there."""

    @property
    def origin(self) -> str: ...

    def authorize_params(self, scope: str, **extra: str) -> dict[str, str]: ...


class Browser:
    """An httpx client that keeps cookies and reads the CSRF token off the last page."""

    def __init__(self, stack: Site) -> None:
        self.stack = stack
        self.http = httpx.Client(base_url=stack.origin, timeout=60, follow_redirects=False)
        self.page = ""

    def get(self, url: str, **params: str) -> httpx.Response:
        response = self.http.get(url, params=params or None)
        self.page = response.text
        return response

    def post(self, url: str, data: dict[str, str | list[str]], csrf: bool = True) -> httpx.Response:
        if csrf:
            data = {"csrf_token": self.field("csrf_token"), **data}
        response = self.http.post(url, data=data)
        self.page = response.text
        return response

    def field(self, name: str) -> str:
        found = re.search(rf'name="{name}" value="([^"]*)"', self.page)
        assert found, f"no {name} on the page"
        return found.group(1)

    def start(self, scope: str, **extra: str) -> str:
        """Send an authorize request; the URL of the first step."""
        response = self.get("/auth/authorize", **self.stack.authorize_params(scope, **extra))
        assert response.status_code == 303, response.text
        return response.headers["location"]

    def sign_in(self, step_url: str, user: str) -> httpx.Response:
        assert self.get(step_url).status_code == 200
        return self.post(
            "/auth/login", {"tx": self.field("tx"), "username": user, "password": PASSWORDS[user]}
        )
