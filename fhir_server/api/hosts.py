"""Only the server's own host names in `Host`: links are built from it.

With `FHIR_BASE_URL` unset, `Location`, `fullUrl` and Bundle links follow the request's
`Host` header, so a forged Host would make the server hand out links to another site (and a
DNS-rebinding page could talk to a server on localhost). A request whose Host is not one of
the allowed names gets a 400 OperationOutcome, like Starlette's `TrustedHostMiddleware` but
in FHIR. A request without Host (HTTP/1.0) is fine: links then use the bound address.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from fhir_server.api.asgi import header, send_error
from fhir_server.errors import BadRequest
from fhir_server.settings import Settings

_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")


def allowed_hosts(settings: Settings) -> list[str]:
    """`FHIR_ALLOWED_HOSTS` (comma-separated `name` or `name:port`, `*` for any), else the
    bound host and the loopback names with the bound port, plus `FHIR_BASE_URL`'s host."""
    configured = [h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip()]
    hosts = configured or _default_hosts(settings.host, settings.port)
    if settings.base_url:
        hosts.append((urlsplit(settings.base_url).netloc.rsplit("@", 1)[-1]).lower())
    return hosts


def _default_hosts(bound: str, port: int) -> list[str]:
    names = (
        [*_LOCAL_NAMES, _bracketed(bound)]
        if bound not in _WILDCARDS
        else [*_LOCAL_NAMES, *_machine_names()]
    )
    hosts = [f"{name}:{port}" for name in names]
    return hosts + names if port == 80 else hosts


def _machine_names() -> list[str]:
    """Bound to every interface: the names and addresses this machine knows itself by."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        infos = []
    names.update(_bracketed(str(info[4][0])) for info in infos)
    return sorted(names)


def _bracketed(name: str) -> str:
    return f"[{name}]" if ":" in name and not name.startswith("[") else name.lower()


def host_matches(host: str, allowed: Iterable[str]) -> bool:
    """`host` (a Host header value) against entries `name` (any port) or `name:port`."""
    host = host.strip().lower()
    name = (
        host[: host.index("]") + 1]
        if host.startswith("[") and "]" in host
        else (host.rsplit(":", 1)[0])
    )
    return any(entry == "*" or entry in (host, name) for entry in allowed)


class AllowedHostsMiddleware:
    """400 (OperationOutcome) for a request whose `Host` is not an allowed name."""

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        if not hosts:
            raise ValueError("at least one allowed host is needed ('*' for any)")
        self.app = app
        self.hosts = tuple(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = header(scope.get("headers"), b"host")
            if host is not None and not host_matches(host.decode("latin-1"), self.hosts):
                await send_error(
                    send,
                    BadRequest(
                        f"Host '{host.decode('latin-1')}' is not a name of this server (set "
                        "FHIR_ALLOWED_HOSTS or FHIR_BASE_URL)",
                        expression=("Host",),
                    ),
                    close=True,
                )
                return
        await self.app(scope, receive, send)
