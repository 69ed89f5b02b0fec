"""The parts of encryption at rest as functions: sealing elements in place, encrypted blob
frames, master key files, which parameters are blind-indexed and how search values map."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from fhir_server.assembly import encryption_problem
from fhir_server.search.registry import build_registry
from fhir_server.settings import Settings
from fhir_server.storage.blobs import FileBlobStore
from fhir_server.storage.encryption import blobs as encrypted_blobs
from fhir_server.storage.encryption.blind import BlindIndex, _bucket
from fhir_server.storage.encryption.blobs import BlobUnreadable, EncryptedBlobStore
from fhir_server.storage.encryption.fields import ElementPaths, FieldCipher, UnreadableRecord
from fhir_server.storage.encryption.keys import (
    DataKeys,
    EncryptionKeyError,
    MasterKeys,
)

KEYS = DataKeys("d1", {"d1": bytes(range(32))}, bytes(32))
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"versionId": "1"},
    "identifier": [{"system": "urn:mrn", "value": "MRN-1"}],
    "active": True,
    "name": [{"family": "Secretname"}],
    "birthDate": "1970-01-02",
    "_birthDate": {"extension": [{"url": "urn:x", "valueString": "Secretext"}]},
    "contact": [{"name": {"family": "Kinname"}}, {"gender": "male"}],
    "gender": "female",
    "text": {"status": "generated", "div": "<div>Secretdiv</div>"},
}


def test_sealing_keeps_everything_else_in_place_and_opens_to_the_same_bytes() -> None:
    cipher = FieldCipher(ElementPaths.from_setting("default"), KEYS)
    data = orjson.dumps(PATIENT)
    sealed = cipher.seal("Patient", "p1", data)
    for secret in (b"Secretname", b"MRN-1", b"1970-01-02", b"Secretext", b"Kinname", b"Secretdiv"):
        assert secret not in sealed
    stored = orjson.loads(sealed)
    assert list(stored)[:-1] == list(PATIENT) and stored["gender"] == "female"
    assert stored["text"]["status"] == "generated" and stored["active"] is True
    assert cipher.open("Patient", "p1", sealed) == data
    with pytest.raises(UnreadableRecord):  # sealed parts are bound to their resource
        cipher.open("Patient", "p2", sealed)
    narrower = FieldCipher(ElementPaths.parse(["Patient.name"]), KEYS)  # setting changed
    assert narrower.open("Patient", "p1", sealed) == data


def test_a_resource_without_encrypted_elements_is_stored_as_it_is() -> None:
    cipher = FieldCipher(ElementPaths.from_setting("default"), KEYS)
    data = orjson.dumps({"resourceType": "Organization", "id": "o", "name": "Acme"})
    assert cipher.seal("Organization", "o", data) == data


def test_element_paths_setting() -> None:
    paths = ElementPaths.from_setting("default, Observation.value[x], Patient.name.family")
    assert ("value[x]",) in paths.of("Observation") and ("note",) in paths.of("Observation")
    assert ("name",) in paths.of("Patient") and ("name", "family") not in paths.of("Patient")
    with pytest.raises(ValueError, match="not an element path"):
        ElementPaths.from_setting("Patient")


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_blobs_are_encrypted_in_frames_that_cannot_be_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encrypted_blobs, "FRAME", 100)
    inner = FileBlobStore(tmp_path)
    store = EncryptedBlobStore(inner, KEYS)
    content = b"Secretscan " * 50 + os.urandom(333)
    ref = await store.put(_chunks(content, 37))
    assert (ref.size, len(ref.sha256)) == (len(content), 64)
    stored = (tmp_path / ref.sha256).read_bytes()
    assert b"Secretscan" not in stored
    assert b"".join([c async for c in store.read(ref.sha256)]) == content
    (tmp_path / ref.sha256).write_bytes(stored[: -(100 + 32)])  # the last frame removed
    with pytest.raises(BlobUnreadable):
        _ = [c async for c in store.read(ref.sha256)]


def test_key_files_and_their_refusals(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys = MasterKeys("", {}, path).with_new_key()
    keys.save(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert MasterKeys.from_file(path) == keys
    rotated = keys.with_new_key()
    assert rotated.active != keys.active and set(keys.keys) < set(rotated.keys)
    wrapped = keys.wrap(b"k" * 32, "data/d1")
    assert rotated.unwrap(wrapped, "data/d1") == b"k" * 32  # old keys still unwrap
    path.write_text(
        json.dumps({"active": "x", "keys": {"y": base64.b64encode(bytes(32)).decode()}})
    )
    with pytest.raises(EncryptionKeyError, match="active key 'x'"):
        MasterKeys.from_file(path)
    short = Settings(
        encryption_key=SecretStr(base64.b64encode(b"short").decode()),
        database=str(tmp_path / "n.db"),
    )
    assert "32 bytes" in (encryption_problem(short) or "")
    missing = Settings(
        encryption_key_file=str(tmp_path / "none.json"), database=str(tmp_path / "n.db")
    )
    assert "cannot be read" in (encryption_problem(missing) or "")


def test_which_parameters_are_blind_indexed() -> None:
    blind = BlindIndex(build_registry(), ElementPaths.from_setting("default"), bytes(32))
    for code in ("name", "family", "given", "identifier", "phone", "telecom", "birthdate"):
        assert blind.sensitive("Patient", code), code
    for code in ("address-city", "address-use", "identifier:of-type"):
        assert blind.sensitive("Patient", code), code
    for type, code in [("Patient", "gender"), ("Patient", "general-practitioner"),
                       ("Observation", "code"), ("Practitioner", "name")]:  # fmt: skip
        assert not blind.sensitive(type, code), (type, code)


def test_search_dates_map_to_their_year_month_or_day() -> None:
    assert _bucket("1961-01-01T00:00:00.000000Z", "1961-12-31T23:59:59.999999Z") == "1961"
    assert _bucket("1961-02-01T00:00:00.000000Z", "1961-02-28T23:59:59.999999Z") == "1961-02"
    assert _bucket("1961-02-03T00:00:00.000000Z", "1961-02-03T23:59:59.999999Z") == "1961-02-03"
    assert _bucket("1961-02-03T10:00:00.000000Z", "1961-02-03T10:59:59.999999Z") is None
    assert _bucket("1961-02-01T00:00:00.000000Z", "1961-02-27T23:59:59.999999Z") is None


def test_contained_resources_are_sealed_by_their_own_types() -> None:
    cipher = FieldCipher(ElementPaths.from_setting("default"), KEYS)
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "contained": [PATIENT, {"resourceType": "Organization", "id": "org", "name": "Acme"}],
        "status": "final",
        "subject": {"reference": "#p1"},
    }
    data = orjson.dumps(observation)
    sealed = cipher.seal("Observation", "o1", data)
    assert b"Secretname" not in sealed and b"MRN-1" not in sealed and b"Acme" in sealed
    assert cipher.open("Observation", "o1", sealed) == data
