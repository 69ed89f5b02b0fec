"""The foot-orthosis order flow over real HTTP, as a clinic's client runs it, with the real
geometry: create the DeviceRequest, upload the scan as raw Binary, index it with a
DocumentReference, start the design Task (respond-async), poll it, fetch the Devices, print
files, preview and statement, and find them by search. Measurements-only orders too, and
the refusals a client can meet."""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trimesh

from adapters.orthotics.synthetic import ScanDefects, noisy_scan, parametric_foot
from tests.support.orthotics import MEASUREMENTS, device_request, quantity
from tests.support.server import ServerProcess

FHIR = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    database = tmp_path_factory.mktemp("orthosis") / "fhir.db"
    process = ServerProcess(database, FHIR_ORTHOTICS_MANUFACTURER="Orthoses Ltd, 1 Main St")
    process.start(timeout=120)  # a loaded machine: the geometry libraries take a while
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=120, headers=FHIR) as http:
        yield http


def _put(client: httpx.Client, resource: dict[str, Any]) -> httpx.Response:
    return client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)


def _poll(client: httpx.Client, location: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        task = client.get(location).json()
        seen.append(task["status"])
        if task["status"] in ("completed", "failed"):
            return task
        time.sleep(0.2)
    raise AssertionError(f"the Task did not finish: {seen[-5:]}")


def _search(client: httpx.Client, type: str, **params: str) -> list[dict[str, Any]]:
    bundle = client.get(type, params=params).json()
    return [entry["resource"] for entry in bundle.get("entry", ())]


def _scan_stl() -> bytes:
    foot = parametric_foot(262, 98, 64, 16)
    scan = noisy_scan(foot, ScanDefects(faces=30_000, seed=3))
    out = io.BytesIO()
    scan.export(out, file_type="stl")
    return out.getvalue()


def test_scan_order_flow_async(client: httpx.Client, server: ServerProcess) -> None:
    assert _put(client, device_request("dr-scan", "right")).status_code == 201
    scan = _scan_stl()
    uploaded = client.post(
        "Binary",
        content=scan,
        headers={"Content-Type": "model/stl", "X-Security-Context": "Patient/p1"},
    )
    assert uploaded.status_code == 201, uploaded.text
    binary_id = uploaded.headers["Location"].split("/Binary/")[1].split("/")[0]
    document = {
        "resourceType": "DocumentReference",
        "id": "doc-scan",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "content": [{"attachment": {"contentType": "model/stl", "url": f"Binary/{binary_id}"}}],
        "context": {"related": [{"reference": "DeviceRequest/dr-scan"}]},
    }
    assert _put(client, document).status_code == 201
    started = client.post(
        "DeviceRequest/dr-scan/$design-orthosis", headers={"Prefer": "respond-async"}
    )
    assert started.status_code == 202, started.text
    task = _poll(client, started.headers["Content-Location"])
    assert task["status"] == "completed", task.get("statusReason")
    assert [t["id"] for t in _search(client, "Task", focus="DeviceRequest/dr-scan")] == [task["id"]]
    (device,) = _search(client, "Device", patient="Patient/p1", _id=_device_ids(task)[0])
    assert device["serialNumber"].startswith("ORTH-")
    definition = client.get(device["definition"]["reference"]).json()
    assert definition["deviceName"][0]["name"].startswith("Custom foot orthosis, MJF")
    files = client.get(f"Device/{device['id']}/$print-files").json()["parameter"]
    _check_files(client, [f["valueAttachment"] for f in files])
    documents = _search(client, "DocumentReference", related="DeviceRequest/dr-scan")
    kinds = sorted(_kind(d) for d in documents)
    assert kinds == ["foot-scan?", "preview", "print-3mf", "print-stl", "statement"]
    preview = _fetch(client, _attachment(documents, "preview"))
    assert preview.startswith(b"\x89PNG")
    statement = _fetch(client, _attachment(documents, "statement"))
    assert statement.startswith(b"%PDF")


def test_measurements_only_pair_sync(client: httpx.Client) -> None:
    for observation in MEASUREMENTS:
        assert _put(client, observation).status_code in (200, 201)
    refs = [{"reference": f"Observation/{o['id']}"} for o in MEASUREMENTS]
    order = device_request("dr-pair", "pair", supportingInfo=refs)
    order["parameter"][1]["valueCodeableConcept"]["coding"][0]["code"] = "sls-pa12"
    assert _put(client, order).status_code == 201
    answer = client.post("DeviceRequest/dr-pair/$design-orthosis")
    assert answer.status_code == 200, answer.text
    task = answer.json()
    assert task["status"] == "completed"
    devices = [client.get(f"Device/{i}").json() for i in _device_ids(task)]
    pair = [d for d in devices if "parent" not in d]
    insoles = [d for d in devices if "parent" in d]
    assert len(pair) == 1 and len(insoles) == 2
    files = client.get(f"Device/{pair[0]['id']}/$print-files").json()["parameter"]
    assert len(files) == 4  # STL and 3MF of each insole
    _check_files(client, [f["valueAttachment"] for f in files])


def test_refusals_name_the_parameter_and_the_gate(client: httpx.Client) -> None:
    order = device_request("dr-bad", "left", extra=[quantity("toe-spring", 5, "mm")])
    refused = _put(client, order)
    assert refused.status_code == 422
    assert "Unknown parameter code 'toe-spring'" in refused.text
    order = device_request("dr-range", "left")
    order["parameter"][2] = quantity("arch-height", 50, "mm")
    refused = _put(client, order)
    assert refused.status_code == 422
    assert "outside its range 0 to 35 mm" in refused.text


def test_an_unusable_scan_is_a_422(client: httpx.Client) -> None:
    assert _put(client, device_request("dr-junk", "left")).status_code == 201
    junk = trimesh.creation.box((3.0, 2.0, 1.0))  # far too small to be a foot in any unit
    out = io.BytesIO()
    junk.export(out, file_type="stl")
    uploaded = client.post("Binary", content=out.getvalue(), headers={"Content-Type": "model/stl"})
    binary_id = uploaded.headers["Location"].split("/Binary/")[1].split("/")[0]
    document = {
        "resourceType": "DocumentReference",
        "id": "doc-junk",
        "status": "current",
        "content": [{"attachment": {"contentType": "model/stl", "url": f"Binary/{binary_id}"}}],
        "context": {"related": [{"reference": "DeviceRequest/dr-junk"}]},
    }
    assert _put(client, document).status_code == 201
    answer = client.post("DeviceRequest/dr-junk/$design-orthosis")
    assert answer.status_code == 422, answer.text
    assert "The scan cannot be used" in answer.json()["issue"][0]["diagnostics"]
    (task,) = _search(client, "Task", focus="DeviceRequest/dr-junk")
    assert task["status"] == "failed"


def _device_ids(task: dict[str, Any]) -> list[str]:
    refs = [o["valueReference"]["reference"] for o in task["output"] if "valueReference" in o]
    return [r.split("/")[1] for r in refs if r.startswith("Device/")]


def _kind(document: dict[str, Any]) -> str:
    codings = (document.get("type") or {}).get("coding") or [{"code": "foot-scan?"}]
    return str(codings[0]["code"])


def _attachment(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = next(d for d in documents if _kind(d) == kind)
    return dict(found["content"][0]["attachment"])


def _fetch(client: httpx.Client, attachment: dict[str, Any]) -> bytes:
    url = attachment["url"]
    raw = client.get(url, headers={"Accept": attachment["contentType"]})
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith(attachment["contentType"])
    return raw.content


def _check_files(client: httpx.Client, attachments: list[dict[str, Any]]) -> None:
    """Each file downloads byte-identical to what was issued: size and SHA-1 as recorded."""
    assert {a["contentType"] for a in attachments} == {"model/stl", "model/3mf"}
    for attachment in attachments:
        data = _fetch(client, attachment)
        assert len(data) == attachment["size"]
        assert base64.b64decode(attachment["hash"]) == hashlib.sha1(data).digest()
        if attachment["contentType"] == "model/stl":
            faces = int.from_bytes(data[80:84], "little")
            assert len(data) == 84 + 50 * faces
            mesh = trimesh.load_mesh(io.BytesIO(data), file_type="stl")
            assert isinstance(mesh, trimesh.Trimesh)
            assert mesh.is_watertight and mesh.volume > 0


def test_a_restart_fails_the_running_task_and_a_gate_refusal_issues_nothing(
    tmp_path: Path,
) -> None:
    """A design killed mid-run: the next start marks its Task failed. Then the same server
    with a printer too small for an insole refuses the design naming the build-volume gate."""
    database = tmp_path / "restart.db"
    first = ServerProcess(database).start(timeout=120)
    try:
        with httpx.Client(base_url=first.base, timeout=120, headers=FHIR) as client:
            for observation in MEASUREMENTS:
                _put(client, observation)
            refs = [{"reference": f"Observation/{o['id']}"} for o in MEASUREMENTS]
            assert _put(client, device_request("dr-k", "pair", supportingInfo=refs)).is_success
            started = client.post(
                "DeviceRequest/dr-k/$design-orthosis", headers={"Prefer": "respond-async"}
            )
            assert started.status_code == 202
            first.kill()  # the geometry is still loading or designing: no Task is finished
    finally:
        first.stop()
    small = ServerProcess(database, FHIR_ORTHOTICS_BUILD_VOLUME_MM="[120, 120, 120]")
    small.start(timeout=120)
    try:
        with httpx.Client(base_url=small.base, timeout=120, headers=FHIR) as client:
            task_id = started.headers["Content-Location"].rsplit("/Task/", 1)[1]
            task = client.get(f"Task/{task_id}").json()
            assert task["status"] == "failed"
            assert "stopped while this design ran" in task["statusReason"]["text"]
            refused = client.post("DeviceRequest/dr-k/$design-orthosis")
            assert refused.status_code == 422, refused.text
            texts = [issue["diagnostics"] for issue in refused.json()["issue"]]
            assert any(t.startswith("Printability gate 'build-volume' failed") for t in texts)
            assert "limit 120" in " ".join(texts)
            assert _search(client, "Device", patient="Patient/p1") == []
    finally:
        small.stop()
