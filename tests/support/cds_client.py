"""A CDS client for end-to-end tests, built like the public CDS Hooks sandbox.

- `JwksHost`: the client's JWK set on a small loopback HTTP server (the `jku` it names);
- `CdsClient`: signs an ES384 JWT per request (`kid`, `typ: JWT`, `jku`, `aud` the exact
  URL called, a fresh `jti`), reads discovery, resolves each service's prefetch itself
  against the FHIR server (`POST [type]/_search` for searches, `GET` for reads), calls
  the service and sends feedback on its cards;
- `cds_stack`: a FHIR server (uvicorn in a thread) offering the given CDS services, the
  client registered with `fhir-server cds client add --jwks-url`, loaded with resources.

A test of a service needs only:

    def test_my_service(cds_stack_factory):
        stack = cds_stack_factory([MyService()], resources=[patient, *observations])
        answer = stack.client.call_service("my-service", patient_id="p1")
        assert answer.status_code == 200 and answer.json()["cards"][0]["indicator"] == ...

(with the shipped services: `cds_stack_factory(None, ...)` offers what the registry
collects).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from joserfc import jws
from joserfc.jwk import ECKey

from cds_hooks.service import CdsService
from fhir_server.storage.base import Storage
from tests.support.thread_server import ThreadServer

USER = "Practitioner/doc-1"


class JwksHost:
    """Serves `jwks` at `{url}` from a loopback HTTP server in a thread, with the given
    Cache-Control; counts the fetches."""

    def __init__(self, jwks: dict[str, Any], cache_control: str = "max-age=300") -> None:
        self.jwks = jwks
        self.cache_control = cache_control
        self.fetches = 0
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.fetches += 1
                body = json.dumps(host.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", host.cache_control)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def start(self) -> JwksHost:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def new_key(kid: str | None = None) -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": kid or uuid.uuid4().hex})


@dataclass
class CdsClient:
    """An EHR calling CDS services at `root` (the server's root; FHIR data at `fhir`)."""

    root: str
    fhir: str
    iss: str
    key: ECKey
    jku: str | None = None
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def token(self, url: str, *, header: dict[str, Any] | None = None, **claims: Any) -> str:
        """A signed JWT for a call to `url`; `header`/`claims` override the usual fields."""
        now = int(time.time())
        head = {"alg": "ES384", "typ": "JWT", "kid": self.key.kid}
        if self.jku:
            head["jku"] = self.jku
        payload = {"iss": self.iss, "aud": url, "exp": now + 120, "iat": now}
        payload["jti"] = uuid.uuid4().hex
        head = {k: v for k, v in {**head, **(header or {})}.items() if v is not None}
        alg = str(head["alg"])
        body = json.dumps({**payload, **claims}).encode()  # jws: no header field added
        return jws.serialize_compact(head, body, self.key, algorithms=[alg])

    def headers(self, url: str, token: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token or self.token(url)}",
            "Content-Type": "application/json",
        }

    def discovery(self) -> httpx.Response:
        url = f"{self.root}/cds-services"
        return self.http.get(url, headers=self.headers(url))

    def definition(self, service_id: str) -> dict[str, Any]:
        services = self.discovery().json()["services"]
        return next(s for s in services if s["id"] == service_id)

    def prefetch(self, service_id: str, context: dict[str, Any]) -> dict[str, Any]:
        """Each prefetch template of the service, resolved as the sandbox does."""
        result: dict[str, Any] = {}
        for key, template in self.definition(service_id).get("prefetch", {}).items():
            query = template
            for name, value in context.items():
                query = query.replace("{{context." + name + "}}", str(value))
            query = query.replace("{{userPractitionerId}}", USER.split("/")[1])
            # a token the client has no value for (e.g. the user is not a PractitionerRole)
            result[key] = None if "{{" in query else self.fetch(query)
        return result

    def fetch(self, query: str) -> dict[str, Any] | None:
        path, _, search = query.partition("?")
        if search or "/" not in path:
            answer = self.http.post(
                f"{self.fhir}/{path}/_search",
                content=search,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        else:
            answer = self.http.get(f"{self.fhir}/{path}")
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    def call_service(
        self,
        service_id: str,
        *,
        patient_id: str,
        hook: str | None = None,
        context: dict[str, Any] | None = None,
        prefetch: dict[str, Any] | bool | None = True,
        fhir_server: str | None = None,
        fhir_authorization: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        """Call a service. `prefetch=True` resolves it here first, `False` sends none (the
        server fetches from `fhir_server`), or give the prefetch object to send."""
        full = {"userId": USER, "patientId": patient_id, **(context or {})}
        if prefetch is True:
            prefetch = self.prefetch(service_id, full)
        body: dict[str, Any] = {
            "hook": hook or self.definition(service_id)["hook"],
            "hookInstance": str(uuid.uuid4()),
            "context": full,
        }
        if prefetch:
            body["prefetch"] = prefetch
        if fhir_server:
            body["fhirServer"] = fhir_server
        if fhir_authorization:
            body["fhirAuthorization"] = fhir_authorization
        url = f"{self.root}/cds-services/{service_id}"
        return self.http.post(url, content=json.dumps(body), headers=self.headers(url, token))

    def feedback(
        self, service_id: str, card: dict[str, Any], outcome: str, **extra: Any
    ) -> httpx.Response:
        item: dict[str, Any] = {
            "card": card["uuid"],
            "outcome": outcome,
            "outcomeTimestamp": "2026-12-02T10:00:00Z",
            **extra,
        }
        if outcome == "accepted" and card.get("suggestions"):
            item.setdefault("acceptedSuggestions", [{"id": card["suggestions"][0]["uuid"]}])
        url = f"{self.root}/cds-services/{service_id}/feedback"
        return self.http.post(
            url, content=json.dumps({"feedback": [item]}), headers=self.headers(url)
        )


def cds_cli(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`fhir-server cds ...` on the server's database."""
    command = [str(Path(sys.executable).parent / "fhir-server"), "cds", *args]
    env = {**os.environ, "FHIR_DATABASE": str(database)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@dataclass
class CdsStack:
    """A running server with CDS services, its registered client and the client's keys."""

    server: ThreadServer
    client: CdsClient
    jwks: JwksHost
    database: Path
    extra_hosts: list[JwksHost] = field(default_factory=list)

    @property
    def root(self) -> str:
        return self.server.base.removesuffix("/fhir")

    def load(self, resources: Iterable[dict[str, Any]]) -> None:
        headers = {"Content-Type": "application/fhir+json"}
        if self.server.settings.auth == "on":
            headers["Authorization"] = f"Bearer {self.fhir_token('system/*.*')}"
        for resource in resources:
            url = f"{self.server.base}/{resource['resourceType']}/{resource['id']}"
            answer = httpx.put(url, json=resource, headers=headers)
            assert answer.status_code in (200, 201), answer.text

    def fhir_token(self, scope: str) -> str:
        """A system access token of this server (`fhir-server auth token`)."""
        command = [str(Path(sys.executable).parent / "fhir-server"), "auth", "token"]
        command += ["--scope", scope, "--base-url", self.server.base]
        env = {**os.environ, "FHIR_DATABASE": str(self.database)}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def add_client(self, *args: str) -> CdsClient:
        """Another CDS client, registered with `cds client add --jwks-url` and `args`."""
        key = new_key()
        jwks = JwksHost({"keys": [key.as_dict(private=False)]}).start()
        self.extra_hosts.append(jwks)
        iss = f"https://ehr-{uuid.uuid4().hex[:8]}.example.org"
        added = cds_cli(self.database, "client", "add", "--iss", iss, "--jwks-url", jwks.url, *args)
        assert added.returncode == 0, added.stderr
        return CdsClient(self.root, self.server.base, iss, key, jwks.url)

    def stop(self) -> None:
        self.server.stop()
        for host in [self.jwks, *self.extra_hosts]:
            host.stop()
        self.client.http.close()


def start_stack(
    tmp_path: Path,
    services: Iterable[CdsService] | None,
    storage: Storage,
    resources: Iterable[dict[str, Any]] = (),
    **settings: str,
) -> CdsStack:
    """The server on `storage` offering `services` (None: the shipped ones), a client
    registered by its JWKS URL, `resources` loaded."""
    database = tmp_path / "fhir.db"
    key = new_key()
    jwks = JwksHost({"keys": [key.as_dict(private=False)]}).start()
    iss = "https://ehr.example.org"
    added = cds_cli(database, "client", "add", "--iss", iss, "--jwks-url", jwks.url)
    assert added.returncode == 0, added.stderr
    server = ThreadServer(
        storage,
        tmp_path / "server.log",
        cds_services=services,
        database=str(database),
        **settings,
    ).start()
    root = server.base.removesuffix("/fhir")
    client = CdsClient(root=root, fhir=server.base, iss=iss, key=key, jku=jwks.url)
    stack = CdsStack(server, client, jwks, database)
    stack.load(resources)
    return stack


def iterate(stack: CdsStack) -> Iterator[CdsStack]:
    try:
        yield stack
    finally:
        stack.stop()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None = None) -> str:
    """A JWT signed by hand: HMAC-SHA256 with `secret`, or unsigned (`alg: none`) without."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"
