"""Over real HTTP, the MongoDB engine on the stricter stand-in (which refuses what a real
server refuses: 16 MiB documents, NUL bytes in a regex, transactions too large): a 17 MB
resource is stored and served, `:contains` with a NUL byte is a plain search, and a
transaction Bundle too large for the database is a 413 that says to split it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest

from fhir_server.storage.mongodb import MongoStorage
from tests.support.mongomock_async import MockClient
from tests.support.thread_server import ThreadServer

JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadServer, MockClient]]:
    client = MockClient()
    storage = MongoStorage(cast(Any, client.get_database("fhir")))
    log = tmp_path_factory.mktemp("mongodb-http") / "server.log"
    server = ThreadServer(storage, log).start()
    try:
        yield server, client
    finally:
        server.stop()


def test_a_17_mb_resource_is_stored_and_served(served: tuple[ThreadServer, MockClient]) -> None:
    server, _ = served
    notes = [
        {"url": "http://example.org/note", "valueString": f"{i}" + "x" * 1_000_000}
        for i in range(17)
    ]
    body = {"resourceType": "Basic", "code": {"text": "big"}, "extension": notes}
    made = httpx.post(f"{server.base}/Basic", json=body, headers=JSON, timeout=120)
    assert made.status_code == 201, made.text[:500]
    read = httpx.get(f"{server.base}/Basic/{made.json()['id']}", timeout=120)
    assert read.status_code == 200 and read.json()["extension"] == notes


def test_contains_with_a_nul_byte_is_a_plain_search(
    served: tuple[ThreadServer, MockClient],
) -> None:
    server, _ = served
    body = {"resourceType": "Patient", "name": [{"family": "Nulsson"}]}
    assert httpx.post(f"{server.base}/Patient", json=body, headers=JSON).status_code == 201
    found = httpx.get(f"{server.base}/Patient", params={"name:contains": "uls\0"})
    assert found.status_code == 200, found.text
    assert found.json()["total"] == 0
    found = httpx.get(f"{server.base}/Patient", params={"name:contains": "ulss"})
    assert found.status_code == 200 and found.json()["total"] == 1


def test_a_transaction_too_large_is_a_413_saying_to_split_it(
    served: tuple[ThreadServer, MockClient],
) -> None:
    server, client = served
    client.limits.transaction_write_bytes = 20_000
    try:
        entries = [
            {
                "resource": {"resourceType": "Patient", "name": [{"family": f"P{i}"}]},
                "request": {"method": "POST", "url": "Patient"},
            }
            for i in range(100)
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        answer = httpx.post(server.base, json=bundle, headers=JSON, timeout=60)
    finally:
        client.limits.transaction_write_bytes = 512 * 1024 * 1024
    assert answer.status_code == 413, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "split it" in outcome["issue"][0]["diagnostics"]
