"""Encryption at rest on every engine: no plaintext of encrypted elements in what the engine
stores, everything read back as written, and searches that give the same ids with
encryption on as off (the README lists what is lost: those are 400s here)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server.interactions.reindex import reindex
from fhir_server.interactions.service import FhirService
from fhir_server.search.registry import build_registry
from fhir_server.storage.base import HistoryQuery, Storage
from fhir_server.storage.encryption import (
    ElementPaths,
    KeyMismatch,
    MasterKeys,
    encrypted,
    rotate,
)
from fhir_server.storage.encryption.fields import FieldCipher
from tests.support.engines import ENGINE_FACTORIES
from tests.support.service_calls import call

KEY = base64.b64encode(bytes(range(32))).decode()
SECRETS: tuple[str, ...] = (
    "Zyxwarden",
    "zyxwarden",
    "Quillon",
    "MRN-73519",
    "555-0142-88",
    "1961-07-14",
)
SECRETS += ("Lakewood", "dizziness")


def _patient(id: str, family: str, given: str, mrn: str, phone: str, born: str, **extra: Any):
    return {
        "resourceType": "Patient",
        "id": id,
        "identifier": [
            {
                "system": "urn:mrn",
                "value": mrn,
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
            }
        ],
        "name": [{"family": family, "given": [given]}],
        "telecom": [{"system": "phone", "value": phone}],
        "birthDate": born,
        "address": [{"city": "Lakewood" if id == "p1" else "Brookfield"}],
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{family}</div>',
        },
        **extra,
    }


PATIENTS = [
    _patient(
        "p1", "Zyxwarden", "Quillon", "MRN-73519", "555-0142-88", "1961-07-14", gender="female"
    ),
    _patient("p2", "Zyxwarde", "Anna", "MRN-11111", "555-0000-01", "1961-07", gender="male"),
    _patient("p3", "Müller", "Jürgen", "MRN-22222", "555-0000-02", "1975-01-02", gender="male"),
    _patient("p4", "Abbott", "Zyx", "MRN-73519", "555-0000-03", "1961", gender="female"),
]
OBSERVATIONS = [
    {
        "resourceType": "Observation",
        "id": f"o{i}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "note": [{"text": "Zyxwarden reports dizziness"}],
    }
    for i, (patient, code) in enumerate([("p1", "8867-4"), ("p2", "8867-4"), ("p3", "1234-5")])
]
SEARCHES = [
    "Patient?identifier=urn:mrn|MRN-73519",
    "Patient?identifier=MRN-73519",
    "Patient?identifier=urn:mrn|",
    "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-73519",
    "Patient?identifier=urn:other|MRN-73519",
    "Patient?identifier:not=urn:mrn|MRN-73519",
    "Patient?phone=555-0142-88",
    "Patient?telecom=555-0000-01,555-0000-02",
    "Patient?name=zyx",
    "Patient?name=ZYXWARDEN",
    "Patient?name=zyxwarde",
    "Patient?name=mull",
    "Patient?name:exact=Zyxwarden",
    "Patient?name:exact=zyxwarden",
    "Patient?family=zyxw&given=quil",
    "Patient?given=zyx",
    "Patient?birthdate=1961-07-14",
    "Patient?birthdate=1961-07",
    "Patient?birthdate=1961",
    "Patient?address-city=lake",
    "Patient?gender=female",
    "Patient?gender=male&name=zyx",
    "Patient?name:missing=false",
    "Observation?subject:Patient.name=zyx",
    "Observation?patient.identifier=MRN-73519",
    "Patient?_has:Observation:subject:code=8867-4&name=zyx",
    "Observation?code=8867-4",
    "Patient?_id=p1,p3",
]
LOST = [
    "Patient?name:contains=yxw",
    "Patient?birthdate=gt1960",
    "Patient?_sort=family",
    "Patient?identifier:text=mrn",
]


def _service(storage: Storage, registry: Any = None) -> FhirService:
    return FhirService(storage, registry=registry or build_registry())


async def _encrypted(storage: Storage, master: MasterKeys | None = None) -> FhirService:
    registry = build_registry()
    paths = ElementPaths.from_setting("default")
    wrapped = await encrypted(storage, master or MasterKeys.from_env(KEY), paths, registry)
    return _service(wrapped, registry)


async def _load(svc: FhirService) -> None:
    for resource in [*PATIENTS, *OBSERVATIONS]:
        status, body = await call(
            svc, "PUT", f"{resource['resourceType']}/{resource['id']}", resource
        )
        assert status in (200, 201), body
    status, _ = await call(svc, "PUT", "Patient/p1", {**PATIENTS[0], "gender": "other"})
    status, _ = await call(svc, "PUT", "Patient/p1", PATIENTS[0])  # three versions of p1
    assert status == 200


@pytest.fixture(params=list(ENGINE_FACTORIES), ids=str)
async def engines(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Storage, Storage]]:
    """Two fresh engines of one kind: one for plain, one for encrypted data."""
    plain = await ENGINE_FACTORIES[request.param](tmp_path / "plain")
    sealed = await ENGINE_FACTORIES[request.param](tmp_path / "sealed")
    try:
        yield plain, sealed
    finally:
        await plain.close()
        await sealed.close()


async def _stored_bytes(storage: Storage) -> bytes:
    """Every byte the engine stores: the SQLite file (+ WAL) or every MongoDB document."""
    path = getattr(storage, "path", None)
    if path is not None:
        files = [Path(path), Path(f"{path}-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    db = storage._db  # type: ignore[attr-defined]
    found: list[bytes] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                found.append(str(k).encode())
                collect(v)
        elif isinstance(value, list | tuple):
            for v in value:
                collect(v)
        elif isinstance(value, bytes):
            found.append(value)
        else:
            found.append(str(value).encode())

    if hasattr(db.client, "_sync"):  # the mongomock stand-in: its committed data
        sync = db.client._sync[db.name]
        for name in sync.list_collection_names():
            for doc in sync[name].find():
                collect(doc)
    else:  # a real MongoDB (FHIR_TEST_MONGODB_URL)
        for name in await db.list_collection_names():
            collect(await db[name].find({}).to_list(None))
    return b"\n".join(found)


def _leaks(raw: bytes) -> list[str]:
    return [s for s in SECRETS if s.encode() in raw or s.encode("utf-16-le") in raw]


def _timeless(value: Any) -> Any:
    """`value` without lastUpdated instants and Bundle ids (they differ between servers)."""
    if isinstance(value, dict):
        return {
            k: _timeless(v)
            for k, v in value.items()
            if k not in ("lastUpdated", "lastModified", "id")
        }
    if isinstance(value, list | tuple):
        return [_timeless(v) for v in value]
    return value


async def _ids(svc: FhirService, search: str) -> tuple[int, list[str]]:
    path, _, query = search.partition("?")
    params = [tuple(p.split("=", 1)) for p in query.split("&")]
    status, body = await call(svc, "GET", path, query=tuple(params))
    ids = sorted(
        e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"
    )
    return status, ids


async def test_nothing_encrypted_is_stored_in_plaintext_and_all_reads_give_it_back(
    engines: tuple[Storage, Storage],
) -> None:
    plain_storage, sealed_storage = engines
    plain, sealed = _service(plain_storage), await _encrypted(sealed_storage)
    await _load(plain)
    await _load(sealed)
    assert _leaks(await _stored_bytes(plain_storage)) == list(SECRETS)  # the check can fail
    assert _leaks(await _stored_bytes(sealed_storage)) == []
    for path in ("Patient/p1", "Patient/p1/_history/2", "Observation/o0", "Patient/p1/_history"):
        assert _timeless(await call(plain, "GET", path)) == _timeless(
            await call(sealed, "GET", path)
        )
    _, body = await call(sealed, "GET", "Patient", query=(("_id", "p1"),))
    assert body["entry"][0]["resource"]["name"][0]["family"] == "Zyxwarden"
    history = await sealed.storage.history(HistoryQuery(type="Patient", id="p1"))
    assert [r.version for r in history.resources] == [3, 2, 1]
    assert all(b"Zyxwarden" in r.data for r in history.resources)
    exported = [r.data async for r in sealed.storage.iter_current("Patient")]
    assert sum(b"MRN-73519" in d for d in exported) == 2


async def test_searches_give_the_same_ids_with_encryption_on_and_off(
    engines: tuple[Storage, Storage],
) -> None:
    plain_storage, sealed_storage = engines
    plain, sealed = _service(plain_storage), await _encrypted(sealed_storage)
    await _load(plain)
    await _load(sealed)
    for search in SEARCHES:
        expected = await _ids(plain, search)
        assert expected[0] == 200, search
        assert await _ids(sealed, search) == expected, search
    assert (await _ids(plain, "Patient?name=zyx"))[1] == ["p1", "p2", "p4"]  # not vacuous
    await reindex(sealed, ["Patient", "Observation"])  # recomputed index values: terms again
    assert _leaks(await _stored_bytes(sealed_storage)) == []
    for search in SEARCHES:
        assert await _ids(sealed, search) == await _ids(plain, search), search
    for search in LOST:
        assert (await _ids(plain, search))[0] == 200, search
        status, _ = await _ids(sealed, search)
        assert status == 400, search


async def test_a_wrong_master_key_cannot_open_the_database(
    engines: tuple[Storage, Storage],
) -> None:
    _, storage = engines
    await _load(await _encrypted(storage))
    other = MasterKeys.from_env(base64.b64encode(bytes(32)).decode())
    with pytest.raises(KeyMismatch):
        await _encrypted(storage, other)


async def test_rotation_keeps_every_version_readable(
    engines: tuple[Storage, Storage], tmp_path: Path
) -> None:
    _, storage = engines
    key_file = tmp_path / "keys.json"
    first = MasterKeys.from_env(KEY)
    first = MasterKeys(first.active, first.keys, key_file)
    first.save(key_file)
    svc = await _encrypted(storage, MasterKeys.from_file(key_file))
    await _load(svc)
    second = first.with_new_key()
    second.save(key_file)
    await rotate(storage, first, second)
    await call(svc, "PUT", "Patient/p5", _patient("p5", "Newman", "Ida", "MRN-5", "1", "1990"))
    after = await _encrypted(storage, MasterKeys.from_file(key_file))  # a process started later
    status, _ = await call(
        after, "PUT", "Patient/p6", _patient("p6", "Late", "Ann", "M6", "2", "1991")
    )
    assert status == 201

    async def one(data: bytes) -> AsyncIterator[bytes]:
        yield data

    ref = await after.blobs.put(one(b"late scan"))  # the old process reads the new data key's
    assert b"".join([c async for c in svc.blobs.read(ref.sha256)]) == b"late scan"
    for reader in (svc, after):  # and what it sealed in resources
        for path in ("Patient/p1/_history/1", "Patient/p5", "Patient/p6"):
            status, body = await call(reader, "GET", path)
            assert status == 200 and body["name"], path
    status, body = await call(svc, "GET", "Patient", query=(("name", "late"),))
    assert [e["resource"]["id"] for e in body["entry"]] == ["p6"]
    with pytest.raises(KeyMismatch):  # the old master key no longer opens the data keys
        await _encrypted(
            storage, MasterKeys(first.active, {first.active: first.keys[first.active]})
        )


async def test_binary_content_is_encrypted_in_the_blob_store(
    engines: tuple[Storage, Storage],
) -> None:
    _, storage = engines
    blobs = (await _encrypted(storage)).blobs
    content = b"scan of Zyxwarden, MRN-73519 " * 1000

    async def chunks() -> AsyncIterator[bytes]:
        yield content[:1000]
        yield content[1000:]

    ref = await blobs.put(chunks())
    assert ref.size == len(content)
    assert b"".join([c async for c in blobs.read(ref.sha256)]) == content
    assert _leaks(await _stored_bytes(storage)) == []
    raw = b"".join([c async for c in storage.blobs().read(ref.sha256)])
    assert b"Zyxwarden" not in raw and len(raw) > len(content)


async def test_a_write_that_cannot_be_encrypted_stores_nothing(
    engines: tuple[Storage, Storage], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, storage = engines
    svc = await _encrypted(storage)
    await _load(svc)

    def broken(self: FieldCipher, type: str, id: str, data: bytes) -> bytes:
        raise RuntimeError("the cipher failed")

    monkeypatch.setattr(FieldCipher, "seal", broken)
    with pytest.raises(RuntimeError, match="cipher failed"):
        await call(svc, "PUT", "Patient/p9", _patient("p9", "Halfway", "Ann", "M-9", "9", "1990"))
    with pytest.raises(RuntimeError, match="cipher failed"):
        await call(svc, "PUT", "Patient/p1", {**PATIENTS[0], "gender": "unknown"})
    assert await storage.read("Patient", "p9") is None
    current = await storage.read("Patient", "p1")
    assert current is not None and current.version == 3
    assert _leaks(await _stored_bytes(storage)) == []
    monkeypatch.undo()
    status, body = await call(svc, "GET", "Patient", query=(("family", "halfway"),))
    assert status == 200 and body.get("entry", []) == []
