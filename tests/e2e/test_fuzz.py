"""Property-based fuzzing over real HTTP: no request gets a 5xx or hangs.

Mutated official examples are written with POST, PUT (plain and conditional) and PATCH,
mutated transaction and batch Bundles go to the base, raw bytes and mutated XML go
everywhere, and generated searches hit every kind of parameter. Each request must answer
below 500 within `TIMEOUT` seconds (longer is a hang); afterwards the server still answers
`/metadata`. Each engine gets a server with its own data, so the garbage stays out of other
tests: SQLite in a `fhir-server serve` process, MongoDB on mongomock under uvicorn in a thread.

`FHIR_FUZZ_EXAMPLES` sets the examples per test and engine (default 80: about a minute for
the file on two cores); e.g. FHIR_FUZZ_EXAMPLES=2000 fuzzes for longer. Hypothesis prints the
failing example; the assertion message holds the end of the server's log (its traceback).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.model.xml import json_to_xml
from fhir_server.search.registry import load_registry
from fhir_server.storage.mongodb import MongoStorage
from tests.support.fuzz import (
    INVALID_IDS,
    SEARCH_STRINGS,
    SEED_TYPES,
    VECTORS,
    encode,
    leaf_values,
    load_seeds,
    mutated,
    odd_values,
    search_query,
)
from tests.support.mongomock_async import mock_database
from tests.support.server import ServerProcess
from tests.support.thread_server import ThreadServer

MAX_QUERY = 30_000  # characters in one query value (the HTTP client refuses 64 KiB)
TIMEOUT = 10.0  # seconds; a request that takes longer is a hang
# A synchronous $reindex re-indexes everything the fuzzing wrote so far: its time grows with
# the run (past 10 s on the MongoDB stand-in, whose awaits never yield, after ~500 examples).
REINDEX_TIMEOUT = 180.0
EXAMPLES = int(os.environ.get("FHIR_FUZZ_EXAMPLES", "80"))
JSON = "application/fhir+json"
XML = "application/fhir+xml"
PATCH_JSON = "application/json-patch+json"
SEEDS = load_seeds()
REGISTRY = load_registry()
FHIRPATH_PATCHES = [
    case["patch"]
    for case in json.loads((VECTORS.parent / "fhirpatch" / "cases.json").read_bytes())["cases"]
]
JSON_PATCHES = [
    [{"op": "replace", "path": "/active", "value": True}],
    [
        {"op": "add", "path": "/name/-", "value": {"family": "Added"}},
        {"op": "remove", "path": "/name/0"},
    ],
    [
        {"op": "test", "path": "/id", "value": "example"},
        {"op": "copy", "from": "/name/0", "path": "/name/-"},
        {"op": "move", "from": "/name/1", "path": "/name/0"},
    ],
]

# A function-scoped fixture is never used: every example shares the module's server, which
# is the point (state left by one example is input to the next).
fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Served(Protocol):
    """A running server: `ServerProcess` or `ThreadServer`."""

    @property
    def base(self) -> str: ...

    log: Path

    def alive(self) -> bool: ...

    def stop(self) -> None: ...


class Fuzzer:
    """Sends requests to a server and fails on a 5xx or a hang (then starts a fresh server)."""

    def __init__(self, start: Callable[[], Served]) -> None:
        self.start = start
        self.server = start()
        self.http = httpx.Client(base_url=self.server.base, timeout=TIMEOUT)
        self.load_seeds()

    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        reindex = method == "POST" and url.rstrip("/").endswith("$reindex")
        limit = REINDEX_TIMEOUT if reindex else TIMEOUT
        try:
            response = self.http.request(method, url, timeout=limit, **kwargs)
        except httpx.TimeoutException:
            self.restart()
            raise AssertionError(f"hang: {method} {url} took over {limit} s") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as error:
            log = self.log_tail()
            if not self.server.alive():
                self.restart()  # it crashed
            raise AssertionError(f"{method} {url}: {error!r}\n{log}") from None
        assert response.status_code < 500, (
            f"{method} {url} -> {response.status_code} {response.text[:500]}\n{self.log_tail()}"
        )
        return response

    def log_tail(self) -> str:
        """The server's last logged traceback (or the end of its log)."""
        log = self.server.log.read_text(errors="replace")
        start = log.rfind("unexpected error on ")
        return log[start:][-6000:] if start >= 0 else log[-3000:]

    def restart(self) -> None:
        self.server.stop()
        self.close()
        self.server = self.start()
        self.http = httpx.Client(base_url=self.server.base, timeout=TIMEOUT)
        self.load_seeds()

    def close(self) -> None:
        self.http.close()
        self.server.stop()

    def load_seeds(self) -> None:
        """The seed resources at their ids, so patches, reads and searches find something."""
        for kind in SEED_TYPES:
            for seed in SEEDS[kind]:
                if "id" in seed:
                    self.http.put(
                        f"/{kind}/{seed['id']}",
                        content=encode(seed),
                        headers={"Content-Type": JSON},
                    )
        for seed in SEEDS["transaction"] + SEEDS["batch"]:
            self.http.post("", content=encode(seed), headers={"Content-Type": JSON})

    def read_back(self, response: httpx.Response) -> None:
        """A created or updated resource can be read again in JSON and in XML."""
        location = response.headers.get("location") or response.headers.get("content-location")
        if response.status_code in (200, 201) and location:
            self.send("GET", location)
            self.send("GET", location, params={"_format": "xml"})
            resource = location.split("/_history/")[0]
            self.send("GET", resource + "/_history")
            type_, _, id = resource.rpartition("/")
            self.send("GET", type_, params={"_id": id, "_include": "*", "_format": "xml"})


@pytest.fixture(scope="module", params=["sqlite", "mongomock"])
def fuzzer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzer]:
    """A server of its own per storage engine (MongoDB on mongomock, in a thread)."""
    folder = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    limit = str(4 * 1024 * 1024)
    starts = itertools.count()

    def start() -> Served:
        n = next(starts)
        if request.param == "sqlite":
            return ServerProcess(folder / f"fhir{n}.db", FHIR_MAX_BODY_BYTES=limit).start()
        storage = MongoStorage(cast(Any, mock_database()))
        return ThreadServer(storage, folder / f"server{n}.log", max_body_bytes=limit).start()

    fuzzer = Fuzzer(start)
    yield fuzzer
    fuzzer.close()


def _id_of(document: Any) -> str:
    id = document.get("id") if isinstance(document, dict) else None
    return quote(id, safe="") if isinstance(id, str) and id else "fuzz-target"


# -- resources ------------------------------------------------------------------------------

resource_kinds = st.sampled_from(SEED_TYPES)


@st.composite
def resource_writes(draw: st.DrawFn) -> tuple[str, str, Any, dict[str, str]]:
    kind = draw(resource_kinds)
    document = draw(mutated(draw(st.sampled_from(SEEDS[kind]))))
    how = draw(
        st.sampled_from(["post", "put", "put-new", "conditional-put", "if-none-exist", "if-match"])
    )
    headers = {"Content-Type": JSON}
    if how == "post":
        return "POST", f"/{kind}", document, headers
    if how == "if-none-exist":
        headers["If-None-Exist"] = draw(
            st.sampled_from(
                [
                    "identifier=fuzz-1",
                    "_id=example",
                    "",
                    "bogus=1",
                    "name:exact=Chalmers",
                    "&&",
                    "birthdate=xx",
                ]
            )
        )
        return "POST", f"/{kind}", document, headers
    if how == "conditional-put":
        criteria = draw(
            st.sampled_from(
                [
                    "identifier=fuzz-1",
                    "_id=example",
                    "bogus=1",
                    "_id=nope",
                    "name=Chalmers",
                    "_count=1",
                ]
            )
        )
        return "PUT", f"/{kind}?{criteria}", document, headers
    if how == "if-match":
        headers["If-Match"] = draw(
            st.sampled_from(['W/"1"', '"1"', "W/", "*", "x", 'W/"99"', 'W/"' + "9" * 30 + '"'])
        )
    if how == "put-new":
        return (
            "PUT",
            f"/{kind}/{quote(draw(st.sampled_from(INVALID_IDS)), safe='')}",
            document,
            headers,
        )
    return "PUT", f"/{kind}/{_id_of(document)}", document, headers


@fuzz_settings
@given(write=resource_writes())
def test_mutated_resources(fuzzer: Fuzzer, write: tuple[str, str, Any, dict[str, str]]) -> None:
    method, url, document, headers = write
    response = fuzzer.send(method, url, content=encode(document), headers=headers)
    fuzzer.read_back(response)


# -- patches --------------------------------------------------------------------------------


@st.composite
def patches(draw: st.DrawFn) -> tuple[str, Any, str]:
    kind = draw(st.sampled_from(["json", "fhirpath"]))
    target = draw(
        st.sampled_from(
            [
                "/Patient/example",
                "/Observation/example",
                "/Patient?identifier=fuzz-1",
                "/Patient/fuzz-missing",
                "/Patient?_id=example",
            ]
        )
    )
    if kind == "json":
        seed: Any = draw(st.sampled_from(JSON_PATCHES))
        return target, draw(mutated(seed) | st.just(seed)), PATCH_JSON
    seed = copy.deepcopy(draw(st.sampled_from(FHIRPATH_PATCHES)))
    for parameter in seed.get("parameter", [])[:1]:  # a client's FHIRPath, evaluated by us
        for part in parameter.get("part", []):
            if part.get("name") == "path" and draw(st.booleans()):
                part["valueString"] = draw(st.sampled_from(FHIRPATHS))
    return target, draw(mutated(seed) | st.just(seed)), JSON


FHIRPATHS = [
    "Patient.name.given.repeat($this + 'x')",
    "Patient.repeat(name)",
    "Patient.descendants()",
    "(1 | 2).repeat($this + 1)",
    "Patient.name.select($this)",
    "Patient.name[99]",
    "Patient.contained.where(id = 'x')",
    "Patient.name.where(",
    "Patient..name",
    "%x",
    "Patient.name.given.select($this + $this)",
    "Patient.extension('x')",
    "{}",
    "1/0",
    "Patient.name.first().given.last()",
    "Patient.identifier.single()",
    "Patient",
    "Patient.name.given & 'x'",
    "Patient.name.as(string)",
    "Patient.meta.tag",
]


@fuzz_settings
@given(patch=patches())
def test_mutated_patches(fuzzer: Fuzzer, patch: tuple[str, Any, str]) -> None:
    url, document, media = patch
    response = fuzzer.send("PATCH", url, content=encode(document), headers={"Content-Type": media})
    fuzzer.read_back(response)


# -- bundles --------------------------------------------------------------------------------


@st.composite
def bundles(draw: st.DrawFn) -> Any:
    """A transaction or batch with a few entries mutated (or, once in ten, the whole Bundle)."""
    kind = draw(st.sampled_from(["transaction", "batch"]))
    seed = draw(st.sampled_from(SEEDS[kind]))
    if draw(st.integers(0, 9)) == 9:
        return draw(mutated(seed))
    bundle = copy.deepcopy(seed)
    entries = bundle["entry"]
    for index in draw(st.lists(st.integers(0, len(entries) - 1), min_size=1, max_size=3)):
        entries[index] = draw(mutated(entries[index]))
    return bundle


@fuzz_settings
@given(
    bundle=bundles(),
    prefer=st.sampled_from(["", "return=representation", "return=OperationOutcome"]),
)
def test_mutated_bundles(fuzzer: Fuzzer, bundle: Any, prefer: str) -> None:
    headers = {"Content-Type": JSON, **({"Prefer": prefer} if prefer else {})}
    fuzzer.send("POST", "", content=encode(bundle), headers=headers)


# -- raw bytes and XML ----------------------------------------------------------------------

XML_SNIPPETS = [
    b'<!DOCTYPE Patient [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>',
    b'<!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd">',
    b"&a;",
    b"&#0;",
    b"&#xD800;",
    b"&#x1F600;",
    b"<![CDATA[x]]>",
    b"<!-- c -->",
    b"<?pi x?>",
    b'<unknown value="1"/>',
    b'<id value=""/>',
    b'<extension url="http://x"><valueString value="\x01"/></extension>',
    b"</Patient>",
    b'<gender value="1e400"/>',
    b'<x:y xmlns:x="urn:x"/>',
    b"\xff\xfe",
    b"\x00",
    b"<",
    b">",
    b'<div xmlns="http://www.w3.org/1999/xhtml"><script/></div>',
    b"<contained><Patient>",
]


@st.composite
def mangled(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` cut, spliced or with a snippet inserted, at random places."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(1, 3))):
        at = rng.randrange(len(data) + 1)
        op = draw(st.sampled_from(["cut", "insert", "delete", "duplicate"]))
        if op == "cut":
            data = data[:at]
        elif op == "insert":
            data = (
                data[:at] + draw(st.sampled_from(XML_SNIPPETS) | st.binary(max_size=8)) + data[at:]
            )
        elif op == "delete":
            data = data[:at] + data[at + rng.randrange(1, 40) :]
        else:
            data = data[:at] + data[at : at + 50] + data[at:]
    return data


@st.composite
def xml_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(SEED_TYPES))
    document = draw(st.sampled_from(SEEDS[kind]))
    try:  # a mutated document the renderer can write, else the seed itself
        body = json_to_xml(draw(mutated(document, max_mutations=2)))
    except Exception:
        body = json_to_xml(document)
    return draw(st.just(body) | mangled(body))


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(SEED_TYPES))
    body = encode(draw(st.sampled_from(SEEDS[kind])))
    return draw(
        st.one_of(
            mangled(body),
            st.binary(max_size=64),
            st.sampled_from(
                [
                    b"\xef\xbb\xbf" + body,
                    body.decode().encode("utf-16"),
                    b"null",
                    b"[]",
                    b"1e400",
                    b'"x"',
                    b"{}",
                    b"\x00",
                    b"\xc3\x28",
                    b"{" * 50,
                ]
            ),
        )
    )


@fuzz_settings
@given(
    body=xml_bodies() | json_bodies(),
    media=st.sampled_from(
        [
            JSON,
            XML,
            "application/json",
            "text/xml",
            "application/fhir+json; charset=latin-1",
            "application/x-www-form-urlencoded",
            "",
        ]
    ),
    target=st.sampled_from(
        [
            ("POST", "/Patient"),
            ("PUT", "/Patient/example"),
            ("POST", ""),
            ("POST", "/Patient/_search"),
            ("POST", "/Observation"),
            ("PUT", "/Patient?identifier=fuzz-1"),
            ("POST", "/$reindex"),
        ]
    ),
)
def test_raw_and_xml_bodies(
    fuzzer: Fuzzer, body: bytes, media: str, target: tuple[str, str]
) -> None:
    method, url = target
    headers = {"Content-Type": media} if media else {}
    response = fuzzer.send(method, url, content=body, headers=headers)
    fuzzer.read_back(response)


# -- searches -------------------------------------------------------------------------------

search_types = st.sampled_from([*SEED_TYPES, "Patient", "Bundle", "Location", "Practitioner"])


@st.composite
def searches(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]]]:
    type_ = draw(search_types)
    params = draw(search_query(REGISTRY, type_))
    where = draw(
        st.sampled_from(["type", "type", "post", "compartment", "system", "history", "everything"])
    )
    if where == "post":
        return "POST", f"/{type_}/_search", params
    if where == "compartment":
        return "GET", f"/Patient/example/{draw(st.sampled_from([type_, '*']))}", params
    if where == "system":
        return "GET", "/", params
    if where == "history":
        since = draw(st.sampled_from(["_since", "_at", "_count"]))
        value = draw(st.sampled_from(["2024-01-01", "2024", "x", "-1", "2024-01-01T00:00:00Z"]))
        return (
            "GET",
            draw(st.sampled_from([f"/{type_}/_history", "/_history", "/Patient/example/_history"])),
            [(since, value)],
        )
    if where == "everything":
        return "GET", "/Patient/example/$everything", params
    return "GET", f"/{type_}", params


@fuzz_settings
@given(search=searches(), strict=st.booleans())
def test_search_queries(
    fuzzer: Fuzzer, search: tuple[str, str, list[tuple[str, str]]], strict: bool
) -> None:
    method, url, params = search
    headers = {"Prefer": "handling=strict"} if strict else {}
    if method == "POST":
        form = {"Content-Type": "application/x-www-form-urlencoded", **headers}
        fuzzer.send("POST", url, content=urlencode(params).encode(), headers=form)
    else:
        response = fuzzer.send("GET", url, params=params, headers=headers)
        json_ = response.status_code == 200 and "json" in response.headers["content-type"]
        links = response.json().get("link", []) if json_ else []
        for link in links:
            if link.get("relation") in ("next", "previous"):
                fuzzer.send("GET", link["url"], headers=headers)


@fuzz_settings
@given(
    value=odd_values() | leaf_values(),
    name=st.sampled_from(["_id", "name", "_filter", "_sort", "_include", "date"]),
)
def test_search_values_of_any_json_type(fuzzer: Fuzzer, value: Any, name: str) -> None:
    """Odd values written as text (e.g. `{"resourceType": "Patient"}`) are still answered."""
    text = encode(value).decode("utf-8", "replace")[:MAX_QUERY]
    fuzzer.send("GET", "/Patient", params=[(name, text)])


# -- paths, headers and operations ----------------------------------------------------------

SEGMENTS = [
    "Patient",
    "Observation",
    "ValueSet",
    "CodeSystem",
    "example",
    "fuzz-put",
    "_history",
    "1",
    "0",
    "-1",
    "x",
    "_search",
    "metadata",
    "$everything",
    "$validate",
    "$reindex",
    "$expand",
    "$lookup",
    "$translate",
    "$convert-hl7v2",
    "$",
    "$bogus",
    "*",
    "..",
    "%2F",
    "a" * 70,
    "_",
    "Unicorn",
    "%00",
    "%C3%A9",
]
HEADERS = {
    "Accept": ["application/fhir+xml", "text/html;q=0.1, */*", "image/png", "*/*;q=x", ""],
    "If-None-Match": ["*", 'W/"1"', '"1"', "W/", 'W/"x"', ""],
    "If-Match": ["*", 'W/"1"', 'W/"0"', "W/", 'W/"-1"', ""],
    "If-Modified-Since": ["Tue, 01 Jan 2030 00:00:00 GMT", "yesterday", "", "0"],
    "Prefer": ["return=minimal", "return=bogus", "handling=strict", "respond-async", "a\tb"],
    "If-None-Exist": ["_id=example", "bogus=1", "", "=", "&"],
}


@st.composite
def header_sets(draw: st.DrawFn) -> dict[str, str]:
    names = draw(st.lists(st.sampled_from(sorted(HEADERS)), max_size=3, unique=True))
    return {name: draw(st.sampled_from(HEADERS[name])) for name in names}


@fuzz_settings
@given(
    method=st.sampled_from(["GET", "HEAD", "DELETE", "POST", "PUT"]),
    segments=st.lists(st.sampled_from(SEGMENTS), max_size=4),
    headers=header_sets(),
    query=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "code",
                    "system",
                    "url",
                    "_count",
                    "_format",
                    "_since",
                    "_type",
                    "valueSet",
                    "filter",
                    "message",
                    "_summary",
                    "_elements",
                ]
            ),
            st.sampled_from(SEARCH_STRINGS),
        ),
        max_size=3,
    ),
    body=st.none()
    | st.sampled_from(SEED_TYPES).flatmap(lambda kind: st.sampled_from(SEEDS[kind]))
    | odd_values(),
)
def test_paths_headers_and_operations(
    fuzzer: Fuzzer,
    method: str,
    segments: list[str],
    headers: dict[str, str],
    query: list[tuple[str, str]],
    body: Any,
) -> None:
    if body is not None and method in ("POST", "PUT"):
        headers = {**headers, "Content-Type": JSON}
        fuzzer.send(
            method, "/" + "/".join(segments), params=query, headers=headers, content=encode(body)
        )
    else:
        fuzzer.send(method, "/" + "/".join(segments), params=query, headers=headers)


def test_the_server_still_answers(fuzzer: Fuzzer) -> None:
    response = fuzzer.send("GET", "/metadata")
    assert response.status_code == 200
    assert response.json()["resourceType"] == "CapabilityStatement"
