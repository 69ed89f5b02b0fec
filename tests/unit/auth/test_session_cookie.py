"""The session cookie's flags: Secure exactly when the request came over TLS (or the
public base is https), HttpOnly and SameSite always."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.auth_ui_routes import set_cookie
from fhir_server.auth.sessions import Session


def _request(scheme: str, base_url: str | None) -> Request:
    ui = SimpleNamespace(
        sessions=SimpleNamespace(lifetime=600), service=SimpleNamespace(base_url=base_url)
    )
    app: Any = SimpleNamespace(state=SimpleNamespace(auth_ui=ui))
    return Request(
        {
            "type": "http",
            "scheme": scheme,
            "method": "GET",
            "path": "/auth/login",
            "headers": [],
            "query_string": b"",
            "server": ("h", 443),
            "app": app,
        }
    )


@pytest.mark.parametrize(
    ("scheme", "base", "secure"),
    [
        ("https", None, True),
        ("http", "https://fhir.example.org/fhir", True),
        ("http", None, False),
        ("http", "http://127.0.0.1:8080/fhir", False),
    ],
)
def test_secure_where_tls_is_used(scheme: str, base: str | None, secure: bool) -> None:
    response = Response()
    set_cookie(_request(scheme, base), response, Session(id="sid", csrf="c", bind="b"))
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("fhir_auth_session=sid;")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=600" in cookie
    assert ("Secure" in cookie) is secure
