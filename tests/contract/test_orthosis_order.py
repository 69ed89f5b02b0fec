"""The foot-orthosis order flow through the FHIR service, on every engine: order checks,
published codes, $design-orthosis (sync and Task-driven async), what it issues, refusals,
$print-files and restart recovery. The geometry is stubbed (tests/support/orthotics.py);
the e2e tests run the real one over HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import orjson
import pytest

from adapters.orthotics.plugin import install, recover
from adapters.orthotics.records import DOCUMENT_TYPE, TASK_CODE
from adapters.orthotics.workflow import Options
from fhir_server.errors import Unprocessable
from fhir_server.interactions.binary import RawContent
from fhir_server.interactions.request import Request, Response
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage
from terminology.service import install as install_terminology
from tests.support.orthotics import (
    MEASUREMENTS,
    coded,
    device_request,
    quantity,
    stub_design,
)


async def _service(storage: Storage) -> FhirService:
    svc = FhirService(storage)
    terminology = await install_terminology(svc)
    options = Options(manufacturer="Orthoses Ltd, 1 Main St", worker="thread")  # the stub
    await install(svc, terminology.put, options)
    return svc


def _json(response: Response) -> Any:
    body = response.body
    return orjson.loads(body) if isinstance(body, bytes) else body


async def _put(svc: FhirService, resource: dict[str, Any]) -> Response:
    path = f"{resource['resourceType']}/{resource['id']}"
    return await svc.handle(Request("PUT", path, body=resource))


async def _search(svc: FhirService, type: str, **params: str) -> list[dict[str, Any]]:
    found = _json(await svc.handle(Request("GET", type, query=tuple(params.items()))))
    return [entry["resource"] for entry in found.get("entry", ())]


async def _order_with_measurements(svc: FhirService, id: str = "dr-m", side: str = "pair") -> None:
    for observation in MEASUREMENTS:
        await _put(svc, observation)
    refs = [{"reference": f"Observation/{o['id']}"} for o in MEASUREMENTS]
    await _put(svc, device_request(id, side, supportingInfo=refs))


async def _design(svc: FhirService, id: str, *, prefer: str | None = None) -> Response:
    headers = {"prefer": prefer} if prefer else {}
    return await svc.handle(
        Request("POST", f"DeviceRequest/{id}/$design-orthosis", headers=headers, base="http://x")
    )


async def test_a_valid_order_is_accepted(storage: Storage) -> None:
    svc = await _service(storage)
    assert (await _put(svc, device_request("ok"))).status == 201


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        (quantity("heel-height", 3, "mm"), "Unknown parameter code 'heel-height'"),
        (quantity("arch-height", 48, "mm"), "is 48 mm, outside its range 0 to 35 mm"),
        (quantity("rearfoot-posting", 4, "mm"), "give it in deg"),
        (coded("forefoot-extension", "toes"), "one of metatarsal-heads, sulcus, full-length"),
    ],
)  # fmt: skip
async def test_an_order_out_of_range_is_refused_naming_the_range(
    storage: Storage, parameter: dict[str, Any], expected: str
) -> None:
    svc = await _service(storage)
    order = device_request("bad")
    order["parameter"] = [p for p in order["parameter"] if p["code"] != parameter["code"]]
    order["parameter"].append(parameter)
    with pytest.raises(Unprocessable) as refused:
        await _put(svc, order)
    assert refused.value.status == 422
    assert any(expected in issue.diagnostics for issue in refused.value.issues)
    assert refused.value.issues[0].expression[0].startswith("DeviceRequest.parameter[")


async def test_a_missing_laterality_is_refused(storage: Storage) -> None:
    svc = await _service(storage)
    order = device_request("no-side")
    order["parameter"] = order["parameter"][1:]
    with pytest.raises(Unprocessable, match=r"'laterality'.*one of left, right, pair"):
        await _put(svc, order)


async def test_an_implausible_measurement_is_refused(storage: Storage) -> None:
    svc = await _service(storage)
    tall = {**MEASUREMENTS[0], "valueQuantity": {**MEASUREMENTS[0]["valueQuantity"], "value": 520}}
    with pytest.raises(Unprocessable, match=r"foot-length.*150 to 350 mm"):
        await _put(svc, tall)


async def test_the_codes_are_published_in_the_terminology_service(storage: Storage) -> None:
    svc = await _service(storage)
    url = "urn:fhir-server:ValueSet:orthosis-process"
    expanded = _json(await svc.handle(Request("GET", "ValueSet/$expand", query=(("url", url),))))
    codes = {c["code"] for c in expanded["expansion"]["contains"]}
    assert codes == {"fdm-tpu", "mjf-tpu", "sls-pa12"}
    system = "urn:fhir-server:CodeSystem:orthosis-parameter"
    lookup = _json(
        await svc.handle(
            Request(
                "GET", "CodeSystem/$lookup", query=(("system", system), ("code", "arch-height"))
            )
        )
    )
    shown = {p["name"]: p.get("valueString") for p in lookup["parameter"]}
    assert shown["display"] == "Arch height"


async def test_measurements_only_pair_is_issued_in_full(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = stub_design(monkeypatch)
    svc = await _service(storage)
    await _order_with_measurements(svc)
    answer = await _design(svc, "dr-m")
    task = _json(answer)
    assert answer.status == 200 and task["status"] == "completed"
    assert task["businessStatus"]["text"] == "issued"
    assert stub.calls == ["measurements 262"]
    devices = await _search(svc, "Device", patient="Patient/p1")
    assert len(devices) == 3  # the pair and one per insole
    pair = next(d for d in devices if "parent" not in d)
    insoles = [d for d in devices if "parent" in d]
    assert {d["parent"]["reference"] for d in insoles} == {f"Device/{pair['id']}"}
    assert all(d["definition"]["reference"] == "DeviceDefinition/orthosis-mjf-tpu" for d in devices)
    documents = await _search(svc, "DocumentReference", related="DeviceRequest/dr-m")
    kinds = sorted(d["type"]["coding"][0]["code"] for d in documents)
    assert kinds == ["preview", "print-3mf", "print-3mf", "print-stl", "print-stl", "statement"]
    tasks = await _search(svc, "Task", focus="DeviceRequest/dr-m")
    assert [t["id"] for t in tasks] == [task["id"]]
    assert stub.statements[0].patient_code == "p1"
    assert stub.statements[0].prescriber == "Dr A. Podiatrist"


async def test_an_issued_binary_is_byte_identical_and_its_hash_matches(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub_design(monkeypatch)
    svc = await _service(storage)
    await _order_with_measurements(svc, "dr-h", "left")
    await _design(svc, "dr-h")
    (device,) = await _search(svc, "Device", patient="Patient/p1")
    files = _json(
        await svc.handle(Request("GET", f"Device/{device['id']}/$print-files", base="http://x"))
    )
    attachments = [p["valueAttachment"] for p in files["parameter"]]
    assert sorted(a["contentType"] for a in attachments) == ["model/3mf", "model/stl"]
    for attachment in attachments:
        path = attachment["url"].removeprefix("http://x/")
        raw = await svc.handle(Request("GET", path, headers={"accept": attachment["contentType"]}))
        assert isinstance(raw.raw, RawContent)
        data = b"".join([chunk async for chunk in raw.raw.chunks])
        assert len(data) == attachment["size"]
        assert base64.b64decode(attachment["hash"]) == hashlib.sha1(data).digest()
        if attachment["contentType"] == "model/stl":
            assert len(data) == 84 + 50 * 12


async def test_async_mode_answers_202_and_the_task_completes(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub_design(monkeypatch)
    svc = await _service(storage)
    await _order_with_measurements(svc, "dr-a")
    answer = await _design(svc, "dr-a", prefer="respond-async")
    assert answer.status == 202
    location = answer.headers["Content-Location"]
    assert location.startswith("http://x/Task/")
    task_path = location.removeprefix("http://x/")
    status = "requested"
    for _ in range(200):
        status = _json(await svc.handle(Request("GET", task_path)))["status"]
        if status in ("completed", "failed"):
            break
        await asyncio.sleep(0.02)
    assert status == "completed"
    history = _json(await svc.handle(Request("GET", f"{task_path}/_history")))
    steps = [e["resource"]["businessStatus"]["text"] for e in reversed(history["entry"])]
    assert steps == ["queued", "designing", "issuing", "issued"]


async def test_a_failed_gate_issues_nothing_and_names_each_gate(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub_design(monkeypatch).refuse = True
    svc = await _service(storage)
    await _order_with_measurements(svc, "dr-g")
    with pytest.raises(Unprocessable) as refused:
        await _design(svc, "dr-g")
    texts = [issue.diagnostics for issue in refused.value.issues]
    assert "Printability gate 'wall thickness p5' failed: measured 0.6 mm, limit 1.2 mm" in texts
    assert any("'watertight'" in text for text in texts)
    assert await _search(svc, "Device", patient="Patient/p1") == []
    (task,) = await _search(svc, "Task", focus="DeviceRequest/dr-g")
    assert task["status"] == "failed" and task["businessStatus"]["text"] == "refused"
    assert "wall thickness p5" in task["statusReason"]["text"]


async def test_an_unusable_scan_is_refused_with_422(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = stub_design(monkeypatch)
    stub.reject = True
    svc = await _service(storage)
    await _put(svc, device_request("dr-s", "right"))
    scan = {"resourceType": "Binary", "id": "scan1", "contentType": "model/stl", "data": "c29saWQ="}
    await _put(svc, scan)
    document = {
        "resourceType": "DocumentReference",
        "id": "doc-scan",
        "status": "current",
        "content": [{"attachment": {"contentType": "model/stl", "url": "Binary/scan1"}}],
        "context": {"related": [{"reference": "DeviceRequest/dr-s"}]},
    }
    await _put(svc, document)
    with pytest.raises(Unprocessable, match="The scan cannot be used: no foot-shaped body"):
        await _design(svc, "dr-s")
    assert stub.calls == ["scan model/stl ['right']"]


async def test_an_order_without_inputs_is_refused(storage: Storage) -> None:
    svc = await _service(storage)
    await _put(svc, device_request("dr-empty"))
    with pytest.raises(Unprocessable, match="no foot scan"):
        await _design(svc, "dr-empty")


async def test_a_task_left_in_progress_is_failed_at_start(storage: Storage) -> None:
    svc = await _service(storage)
    task = {
        "resourceType": "Task",
        "id": "t-left",
        "status": "in-progress",
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE, "code": "design-orthosis"}]},
        "focus": {"reference": "DeviceRequest/x"},
    }
    await _put(svc, task)
    assert await recover(await _service(storage)) == 1
    left = _json(await svc.handle(Request("GET", "Task/t-left")))
    assert left["status"] == "failed"
    assert "stopped while this design ran" in left["statusReason"]["text"]


async def test_a_pair_scanned_per_side_sends_each_scan_as_its_side(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = stub_design(monkeypatch)
    svc = await _service(storage)
    await _put(svc, device_request("dr-2", "pair"))
    for side in ("left", "right"):
        data = base64.b64encode(f"solid {side}".encode()).decode()
        binary = {"resourceType": "Binary", "id": f"s-{side}", "contentType": "model/stl"}
        await _put(svc, {**binary, "data": data})
        await _put(svc, _scan_document(f"doc-{side}", f"Binary/s-{side}", f"foot-scan-{side}"))
    answer = await _design(svc, "dr-2")
    assert _json(answer)["status"] == "completed"
    assert stub.calls == ["scan model/stl ['left', 'right']"]
    assert stub.scans == {"left": b"solid left", "right": b"solid right"}


def _scan_document(id: str, url: str, kind: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": id,
        "status": "current",
        "type": {"coding": [{"system": DOCUMENT_TYPE, "code": kind}]},
        "content": [{"attachment": {"contentType": "model/stl", "url": url}}],
        "context": {"related": [{"reference": "DeviceRequest/dr-2"}]},
    }


async def test_the_capability_statement_lists_the_operations(storage: Storage) -> None:
    svc = await _service(storage)
    statement = _json(await svc.handle(Request("GET", "metadata")))
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    names = {
        type: {op["name"] for op in resources[type].get("operation", ())}
        for type in ("DeviceRequest", "Device")
    }
    assert "design-orthosis" in names["DeviceRequest"]
    assert "print-files" in names["Device"]
