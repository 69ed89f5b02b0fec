"""Binary content in the blob store, on every engine: raw round trip, JSON reads with
`data`, versions keeping their blobs, and no client-made blob references."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from fhir_server.auth.policy import SmartPolicy
from fhir_server.context import ANONYMOUS, AccessContext
from fhir_server.errors import BadRequest, Forbidden, PayloadTooLarge
from fhir_server.interactions.binary import RawContent, blob_resource, unreferenced
from fhir_server.interactions.request import Request, Response
from fhir_server.interactions.service import FhirService
from fhir_server.model import fhirjson
from fhir_server.storage.base import Storage
from fhir_server.storage.blobs import BlobRef

RAW = {"accept": "model/stl"}


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _upload(svc: FhirService, data: bytes, id: str | None = None) -> tuple[Response, BlobRef]:
    ref = await svc.blobs.put(_chunks(data))
    body = blob_resource("model/stl", ref, "Patient/p1", id)
    method, path = ("PUT", f"Binary/{id}") if id else ("POST", "Binary")
    return await svc.handle(Request(method, path, body=body, blob=ref)), ref


async def _raw(svc: FhirService, path: str) -> tuple[Response, bytes]:
    response = await svc.handle(Request("GET", path, headers=RAW))
    assert isinstance(response.raw, RawContent)
    return response, b"".join([chunk async for chunk in response.raw.chunks])


async def test_raw_bytes_come_back_identical_and_json_has_no_data(storage: Storage) -> None:
    svc = FhirService(storage)
    data = os.urandom(3 * 1024 * 1024 + 17)
    created, ref = await _upload(svc, data)
    assert created.status == 201
    stored = fhirjson.loads(created.body) if isinstance(created.body, bytes) else {}
    assert "data" not in stored and ref.sha256 == hashlib.sha256(data).hexdigest()
    assert stored["meta"]["extension"][0]["valueAttachment"]["size"] == len(data)
    rid = stored["id"]
    response, raw = await _raw(svc, f"Binary/{rid}")
    assert raw == data
    assert isinstance(response.raw, RawContent) and response.raw.content_type == "model/stl"
    as_json = await svc.handle(Request("GET", f"Binary/{rid}"))
    assert isinstance(as_json.body, dict)
    assert base64.b64decode(as_json.body["data"]) == data
    assert "extension" not in as_json.body["meta"]  # a client may PUT back what it read
    assert as_json.body["securityContext"] == {"reference": "Patient/p1"}


async def test_each_version_keeps_its_blob(storage: Storage) -> None:
    svc = FhirService(storage)
    await _upload(svc, b"first version", id="scan1")
    await _upload(svc, b"second version", id="scan1")
    await svc.handle(Request("DELETE", "Binary/scan1"))
    _, old = await _raw(svc, "Binary/scan1/_history/1")
    _, new = await _raw(svc, "Binary/scan1/_history/2")
    assert (old, new) == (b"first version", b"second version")


async def test_an_inline_binary_is_served_raw_too(storage: Storage) -> None:
    svc = FhirService(storage)
    body = {
        "resourceType": "Binary",
        "id": "small",
        "contentType": "text/plain",
        "data": "aGVsbG8=",
    }
    await svc.handle(Request("PUT", "Binary/small", body=body))
    response, raw = await _raw(svc, "Binary/small")
    assert raw == b"hello"
    assert isinstance(response.raw, RawContent) and response.raw.content_type == "text/plain"


async def test_a_json_body_cannot_claim_a_blob(storage: Storage) -> None:
    """A client cannot; the server's own writers (system context) do, e.g. $design-orthosis."""
    svc = FhirService(storage)
    _, ref = await _upload(svc, b"someone else's scan")
    forged = blob_resource("model/stl", ref, "Patient/other")
    with pytest.raises(BadRequest, match="raw bytes"):
        await svc.handle(Request("POST", "Binary", body=forged, context=ANONYMOUS))


async def test_json_reads_of_large_binaries_are_bounded(storage: Storage) -> None:
    svc = FhirService(storage, max_inline_binary_bytes=1000)
    created, _ = await _upload(svc, b"x" * 1001)
    rid = fhirjson.loads(created.body)["id"] if isinstance(created.body, bytes) else ""
    with pytest.raises(PayloadTooLarge, match="Accept: model/stl"):
        await svc.handle(Request("GET", f"Binary/{rid}"))


async def test_the_blob_store_refuses_beyond_its_limit_and_keeps_nothing(storage: Storage) -> None:
    blobs = storage.blobs()
    before = await blobs.names()
    with pytest.raises(PayloadTooLarge):
        await blobs.put(_chunks(b"y" * 5000, 1000), limit=4000)
    assert await blobs.names() == before


async def test_unreferenced_blobs_are_found_and_referenced_ones_kept(storage: Storage) -> None:
    svc = FhirService(storage)
    await _upload(svc, b"kept by version 1", id="gc")
    await _upload(svc, b"kept by version 2", id="gc")
    await svc.handle(Request("DELETE", "Binary/gc"))  # versions 1 and 2 still name theirs
    orphan = await svc.blobs.put(_chunks(b"an upload whose Binary was refused"))
    assert await unreferenced(storage, older_than=0) == [orphan.sha256]
    assert await unreferenced(storage, older_than=3600) == []  # too young to be garbage


async def test_smart_scopes_judge_raw_binaries_by_their_security_context(
    storage: Storage,
) -> None:
    """A patient app writes and reads raw content only in its patient's security context."""
    svc = FhirService(storage)
    svc.policy = SmartPolicy(svc.registry, svc.indexer)
    await svc.handle(Request("PUT", "Patient/p1", body={"resourceType": "Patient", "id": "p1"}))
    app = AccessContext(subject="app", scopes=frozenset({"patient/Binary.cruds"}), patient="p1")
    ref = await svc.blobs.put(_chunks(b"my scan"))
    own = blob_resource("model/stl", ref, "Patient/p1")
    created = await svc.handle(Request("POST", "Binary", body=own, blob=ref, context=app))
    rid = fhirjson.loads(created.body)["id"] if isinstance(created.body, bytes) else ""
    raw = await svc.handle(Request("GET", f"Binary/{rid}", headers=RAW, context=app))
    assert raw.raw is not None
    other = blob_resource("model/stl", ref, "Patient/p2")
    with pytest.raises(Forbidden):
        await svc.handle(Request("POST", "Binary", body=other, blob=ref, context=app))
    stranger = AccessContext(subject="x", scopes=frozenset({"patient/Binary.r"}), patient="p2")
    with pytest.raises(Forbidden):
        await svc.handle(Request("GET", f"Binary/{rid}", headers=RAW, context=stranger))
