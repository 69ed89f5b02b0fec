"""Binary as raw bytes over real HTTP (https://hl7.org/fhir/R4/binary.html#rest): upload with
the file's own Content-Type, download with a non-FHIR Accept, the blob store beside the
SQLite database, and a 100 MB round trip with the server's memory staying flat."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from bench.server import process_tree_memory
from fhir_server.storage.mongodb import MongoStorage
from fhir_server.storage.sqlite import SQLiteStorage
from tests.support.mongomock_async import mock_database
from tests.support.server import ServerProcess
from tests.support.thread_server import ThreadServer

MB = 1024 * 1024
STL = "model/stl"


def _pattern(total: int, chunk: int = MB) -> Iterator[bytes]:
    """`total` bytes that are not all alike (each MB differs), made as they are sent."""
    for n in range(0, total, chunk):
        block = hashlib.sha256(str(n).encode()).digest() * (chunk // 32)
        yield block[: min(chunk, total - n)]


def _digest(total: int) -> str:
    sha = hashlib.sha256()
    for block in _pattern(total):
        sha.update(block)
    return sha.hexdigest()


def test_raw_upload_and_download_round_trip(server: ServerProcess, base: str) -> None:
    scan = b"solid foot\n" + bytes(range(256)) * 100
    created = httpx.post(
        f"{base}/Binary",
        content=scan,
        headers={"Content-Type": STL, "X-Security-Context": "Patient/p1"},
    )
    assert created.status_code == 201, created.text
    location = created.headers["Location"].split("/_history")[0]
    raw = httpx.get(location, headers={"Accept": STL})
    assert raw.status_code == 200
    assert raw.content == scan
    assert raw.headers["content-type"].startswith(STL)
    assert raw.headers["x-security-context"] == "Patient/p1"
    assert raw.headers["etag"] == 'W/"1"'
    as_json = httpx.get(location, headers={"Accept": "application/fhir+json"}).json()
    assert base64.b64decode(as_json["data"]) == scan
    assert as_json["contentType"] == STL
    blobs = Path(f"{server.database}.blobs")
    assert (blobs / hashlib.sha256(scan).hexdigest()).read_bytes() == scan


def test_an_svg_or_other_xml_file_is_raw_content_not_a_fhir_resource(base: str) -> None:
    """image/svg+xml was read as FHIR XML (400: root element not in the FHIR namespace)."""
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="10" height="10"/></svg>'
    for media, body in (("image/svg+xml", svg), ("application/ld+json", b'{"@id": "x"}')):
        created = httpx.post(f"{base}/Binary", content=body, headers={"Content-Type": media})
        assert created.status_code == 201, created.text
        location = created.headers["Location"].split("/_history")[0]
        raw = httpx.get(location, headers={"Accept": media})
        assert raw.content == body and raw.headers["content-type"].startswith(media)
        assert "sandbox" in raw.headers["content-security-policy"]  # a script cannot run


def test_put_replaces_the_content_and_keeps_the_old_version(base: str) -> None:
    url = f"{base}/Binary/scan-put"
    assert httpx.put(url, content=b"v1", headers={"Content-Type": STL}).status_code == 201
    assert httpx.put(url, content=b"v2", headers={"Content-Type": STL}).status_code == 200
    accept = {"Accept": "application/octet-stream"}
    assert httpx.get(url, headers=accept).content == b"v2"
    assert httpx.get(f"{url}/_history/1", headers=accept).content == b"v1"


def test_a_form_post_to_binary_is_still_refused(base: str) -> None:
    refused = httpx.post(
        f"{base}/Binary", content=b"a=b", headers={"Content-Type": "multipart/form-data"}
    )
    assert refused.status_code == 415


def test_a_json_body_cannot_point_at_a_blob(base: str) -> None:
    created = httpx.post(f"{base}/Binary", content=b"secret", headers={"Content-Type": STL})
    location = created.headers["Location"].split("/_history")[0]
    stored = httpx.get(location, params={"_summary": "true"}).json()
    forged = {"resourceType": "Binary", "contentType": STL, "meta": stored["meta"]}
    forged["meta"].pop("versionId"), forged["meta"].pop("lastUpdated")
    answer = httpx.post(
        f"{base}/Binary", json=forged, headers={"Content-Type": "application/fhir+json"}
    )
    assert answer.status_code == 400
    assert "raw bytes" in answer.json()["issue"][0]["diagnostics"]


@pytest.mark.slow
def test_100_mb_round_trip_keeps_server_memory_flat(tmp_path: Path) -> None:
    total = 100 * MB
    server = ServerProcess(tmp_path / "big.db").start()
    try:
        base = server.base
        assert server.process is not None
        pid = server.process.pid
        warm = httpx.post(f"{base}/Binary", content=b"warm", headers={"Content-Type": STL})
        httpx.get(warm.headers["Location"].split("/_history")[0], headers={"Accept": STL})
        before = process_tree_memory(pid).rss_mb
        created = httpx.post(
            f"{base}/Binary",
            content=_pattern(total),
            headers={"Content-Type": STL},
            timeout=120,
        )
        assert created.status_code == 201, created.text
        location = created.headers["Location"].split("/_history")[0]
        sha = hashlib.sha256()
        size = 0
        with httpx.stream("GET", location, headers={"Accept": STL}, timeout=120) as download:
            assert download.status_code == 200
            assert int(download.headers["content-length"]) == total
            for block in download.iter_bytes():
                sha.update(block)
                size += len(block)
        peak = process_tree_memory(pid).hwm_mb
    finally:
        server.stop()
    assert size == total
    assert sha.hexdigest() == _digest(total)
    assert peak - before < 60, f"server peak RSS grew {peak - before:.0f} MB for 100 MB"


def test_blobs_gc_lists_and_removes_only_unreferenced_blobs(tmp_path: Path) -> None:
    database = tmp_path / "gc.db"
    server = ServerProcess(database).start(timeout=120)
    try:
        httpx.post(f"{server.base}/Binary", content=b"referenced", headers={"Content-Type": STL})
    finally:
        server.stop()
    blobs = Path(f"{database}.blobs")
    orphan = blobs / hashlib.sha256(b"orphan").hexdigest()
    orphan.write_bytes(b"orphan")
    env = {**os.environ, "FHIR_DATABASE": str(database)}
    command = [str(Path(sys.executable).parent / "fhir-server"), "blobs", "gc", "--min-age", "0"]
    listed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [orphan.name] and orphan.exists()
    removed = subprocess.run([*command, "--delete"], env=env, capture_output=True, timeout=120)
    assert removed.returncode == 0
    assert not orphan.exists()
    assert (blobs / hashlib.sha256(b"referenced").hexdigest()).exists()


def test_raw_round_trip_on_the_mongodb_engine(tmp_path: Path) -> None:
    """The same HTTP round trip on MongoDB (the mongomock stand-in: GridFS-layout blobs)."""
    storage = MongoStorage(cast(Any, mock_database()))
    server = ThreadServer(storage, tmp_path / "mongo.log").start()
    try:
        data = bytes(range(256)) * 4096  # 1 MiB: five 255 KiB chunks
        created = httpx.post(
            f"{server.base}/Binary", content=data, headers={"Content-Type": STL}, timeout=60
        )
        assert created.status_code == 201, created.text
        location = created.headers["Location"].split("/_history")[0]
        raw = httpx.get(location, headers={"Accept": STL}, timeout=60)
        assert raw.status_code == 200 and raw.content == data
    finally:
        server.stop()


def test_raw_uploads_have_their_own_body_limit(tmp_path: Path) -> None:
    """Raw Binary bodies are held to FHIR_MAX_BINARY_BYTES, JSON bodies to the (here
    smaller) FHIR_MAX_BODY_BYTES; a refused upload leaves nothing in the blob store."""
    database = tmp_path / "limits.db"
    storage = SQLiteStorage(database)
    server = ThreadServer(
        storage, tmp_path / "limits.log", max_body_bytes="1000", max_binary_bytes="4000"
    ).start()
    try:
        post = f"{server.base}/Binary"
        fits = httpx.post(post, content=b"x" * 3000, headers={"Content-Type": STL})
        assert fits.status_code == 201, fits.text
        declared = httpx.post(post, content=b"x" * 5000, headers={"Content-Type": STL})
        assert declared.status_code == 413
        assert "4000 bytes" in declared.json()["issue"][0]["diagnostics"]
        streamed = httpx.post(post, content=_pattern(5000, 1000), headers={"Content-Type": STL})
        assert streamed.status_code == 413  # chunked: no Content-Length to refuse early
        as_json = {"resourceType": "Binary", "contentType": STL, "data": "eA==" * 400}
        too_big = httpx.post(post, json=as_json, headers={"Content-Type": "application/fhir+json"})
        assert too_big.status_code == 413
    finally:
        server.stop()
    blobs = Path(f"{database}.blobs")
    assert sorted(p.name for p in blobs.iterdir()) == [hashlib.sha256(b"x" * 3000).hexdigest()]
