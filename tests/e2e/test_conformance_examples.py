"""Every official R4 example, PUT in JSON and in XML over HTTP and read back unchanged.

The corpus is the `hl7.fhir.r4.examples` 4.0.1 package (CC0), read from
`../shared/hl7.fhir.r4.examples/` beside the checkout when it is there (the test is skipped,
saying so, when it is not). It holds JSON only; the XML form of each example is made with
the server's own XML writer, and what the server answers is compared with what was sent.

For each example `Type-id.json`:
- `PUT /Type/id` with the JSON bytes; `GET /Type/id` must give the same JSON, `meta` aside
  (the server stamps versionId and lastUpdated there);
- `PUT /Type/id` with its XML; `GET /Type/id` as XML must give the same XML document, `meta`
  aside, compared in canonical XML (C14N: attribute order, namespace declarations and
  character escapes such as `&quot;` are not part of an XML document's content).

The examples the server refuses are listed in `tests/vectors/conformance/refused_examples.json`
with the reason each one is invalid R4; the test fails when an example outside the list is
refused, or one in the list is accepted. Two types are the server's own: AuditEvents are
written by the server only (every PUT is refused with 403), and a Subscription's `status`
and `error` are the server's to set (it activates or fails it at once) and it records who
wrote it in an extension: those are left out of the comparison.

About 5,300 examples (87 MB of JSON), four requests each: two server processes, each on
its own database, take half of them each (validating a write with the R4B models is most
of the time, and one process uses one core), each from two client threads.
"""

from __future__ import annotations

import http.client
import json
import tarfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from lxml import etree

from fhir_server.model import fhirjson
from fhir_server.model.xml import FHIR_NS, json_to_xml
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT.parent / "shared" / "hl7.fhir.r4.examples" / "hl7.fhir.r4.examples-4.0.1.tgz"
REFUSED_FILE = ROOT / "tests" / "vectors" / "conformance" / "refused_examples.json"
SERVER_WRITTEN = frozenset({"AuditEvent"})  # refused through the API (403), by design
SUBSCRIPTION_CREATOR = "urn:fhir-server:subscription-creator"
JSON = "application/fhir+json"
XML = "application/fhir+xml"
SERVERS = 2
CLIENTS_PER_SERVER = 2

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Example:
    name: str  # file name in the package: "Patient-example.json"
    raw: bytes
    resource: dict[str, Any] = field(compare=False)

    @property
    def path(self) -> str:
        return f"/{self.resource['resourceType']}/{self.resource['id']}"


def examples() -> list[Example]:
    if not PACKAGE.exists():
        pytest.skip(
            f"the official R4 examples are not beside the checkout ({PACKAGE.name} "
            "in ../shared/hl7.fhir.r4.examples/): conformance run not executed"
        )
    out = []
    with tarfile.open(PACKAGE) as tar:
        for member in tar:
            name = member.name.removeprefix("package/")
            if (
                not member.isfile()
                or not name.endswith(".json")
                or "/" in name
                or name in ("package.json", ".index.json")
            ):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            raw = handle.read()
            out.append(Example(name, raw, fhirjson.loads(raw)))
    return out


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        for n in range(SERVERS):
            database = tmp_path_factory.mktemp(f"conformance{n}") / "fhir.db"
            started.append(ServerProcess(database).start(timeout=120))
        yield started
    finally:
        for process in started:
            process.stop()


class Connection:
    """One keep-alive HTTP/1.1 connection to a server (the standard library's client: about
    20,000 requests here, where a richer client's own overhead would dominate)."""

    def __init__(self, base: str) -> None:
        url = urlsplit(base)
        self.prefix = url.path
        self.http = http.client.HTTPConnection(url.hostname or "", url.port, timeout=300)

    def request(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, bytes]:
        """(status, body); a connection the server closed while idle is opened again once
        (uvicorn closes keep-alive connections after 5 s; every request here is idempotent)."""
        names = {"content_type": "Content-Type", "accept": "Accept"}
        sent = {names[k]: v for k, v in headers.items()}
        for attempt in (1, 2):
            try:
                self.http.request(method, self.prefix + path, body=body, headers=sent)
                response = self.http.getresponse()
                return response.status, response.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.http.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.http.close()


def without_meta(resource: Any) -> Any:
    """The resource without `meta` (and, for a Subscription, what the server manages)."""
    if not isinstance(resource, dict):
        return resource
    out = {k: v for k, v in resource.items() if k != "meta"}
    if out.get("resourceType") == "Subscription":
        out.pop("status", None)
        out.pop("error", None)
        kept = [e for e in out.pop("extension", []) if e.get("url") != SUBSCRIPTION_CREATOR]
        if kept:
            out["extension"] = kept
    return out


def canonical_xml(body: bytes) -> bytes:
    """The document without its top-level `meta` (and, for a Subscription, what the server
    manages), in canonical XML."""
    root = etree.fromstring(body)
    dropped = ["meta"]
    if etree.QName(root).localname == "Subscription":
        dropped += ["status", "error"]
        for ext in root.findall(f"{{{FHIR_NS}}}extension[@url='{SUBSCRIPTION_CREATOR}']"):
            root.remove(ext)
    for name in dropped:
        for element in root.findall(f"{{{FHIR_NS}}}{name}"):
            root.remove(element)
    return etree.tostring(root, method="c14n")


def json_round_trip(http: Connection, example: Example) -> str | None:
    """None when the server took the example and gave it back unchanged, else what happened."""
    status, body = http.request("PUT", example.path, example.raw, content_type=JSON, accept=JSON)
    if status not in (200, 201):
        return f"refused: JSON PUT {status} {body[:300]!r}"
    status, body = http.request("GET", example.path, accept=JSON)
    if status != 200:
        return f"JSON GET {status}"
    if without_meta(fhirjson.loads(body)) != without_meta(example.resource):
        return "JSON read back differs"
    return None


def xml_round_trip(http: Connection, example: Example) -> str | None:
    sent = json_to_xml(example.resource)
    status, body = http.request("PUT", example.path, sent, content_type=XML, accept=JSON)
    if status not in (200, 201):
        return f"XML PUT {status} {body[:300]!r}"
    status, body = http.request("GET", example.path, accept=XML)
    if status != 200:
        return f"XML GET {status}"
    if canonical_xml(body) != canonical_xml(sent):
        return "XML read back differs"
    return None


def refusal(
    http: Connection, example: Example, expected: tuple[int, ...] = (400, 422)
) -> str | None:
    """None when the server refused the example with a 4xx OperationOutcome (`expected`)."""
    status, body = http.request("PUT", example.path, example.raw, content_type=JSON, accept=JSON)
    if status in expected and json.loads(body).get("resourceType") == "OperationOutcome":
        return None
    return f"expected a {'/'.join(map(str, expected))} refusal, got {status}"


def test_official_examples_round_trip_in_json_and_xml(servers: list[ServerProcess]) -> None:
    corpus = examples()
    refused: dict[str, str] = json.loads(REFUSED_FILE.read_text(encoding="utf-8"))
    assert set(refused) <= {e.name for e in corpus}, "the refused list names unknown files"
    local = threading.local()
    opened: list[Connection] = []

    def check(job: tuple[int, Example]) -> tuple[str, str | None]:
        n, example = job
        clients = getattr(local, "clients", None)
        if clients is None:  # one connection per thread and server
            clients = local.clients = [Connection(s.base) for s in servers]
            opened.extend(clients)
        http = clients[n % len(servers)]
        if example.name in refused:
            return example.name, refusal(http, example)
        if example.resource["resourceType"] in SERVER_WRITTEN:
            return example.name, refusal(http, example, (403,))
        return example.name, json_round_trip(http, example) or xml_round_trip(http, example)

    try:
        with ThreadPoolExecutor(SERVERS * CLIENTS_PER_SERVER) as pool:
            outcomes = list(pool.map(check, enumerate(corpus)))
    finally:
        for client in opened:
            client.close()
    problems = {name: problem for name, problem in outcomes if problem}
    shown = "\n".join(f"{name}: {problem}" for name, problem in sorted(problems.items())[:40])
    assert not problems, f"{len(problems)} of {len(corpus)} examples:\n{shown}"
