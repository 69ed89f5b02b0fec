"""`$convert-hl7v2` through the FHIR service, and its Bundle applied twice changes nothing."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2.operations import install
from fhir_server.errors import BadRequest, Unprocessable
from fhir_server.interactions.service import FhirService
from fhir_server.storage.sqlite import SQLiteStorage
from tests.support.loaded import call

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "hl7v2"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[FhirService]:
    storage = SQLiteStorage(tmp_path / "v2.db")
    await storage.open()
    svc = FhirService(storage, base_url="http://test/fhir")
    install(svc)
    try:
        yield svc
    finally:
        await storage.close()


def parameters(text: str) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "message", "valueString": text}]}


async def history_total(svc: FhirService) -> int:
    return (await call(svc, "GET", "_history", query=(("_count", "0"),)))["total"]


@pytest.mark.parametrize("vector", ["adt_a01/admit.hl7", "oru_r01/cmp.hl7"])
async def test_replayed_bundle_changes_nothing(service: FhirService, vector: str) -> None:
    text = (VECTORS / vector).read_bytes().decode()
    bundle = await call(service, "POST", "$convert-hl7v2", parameters(text))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    first = await call(service, "POST", "", bundle)
    versions = await history_total(service)
    again = await call(service, "POST", "$convert-hl7v2", parameters(text))
    second = await call(service, "POST", "", again)
    assert await history_total(service) == versions
    assert [e["response"]["location"] for e in second["entry"]] == [
        e["response"]["location"] for e in first["entry"]
    ]


async def test_binary_body(service: FhirService) -> None:
    raw = (VECTORS / "adt_a01" / "admit.hl7").read_bytes()
    binary = {
        "resourceType": "Binary",
        "contentType": "x-application/hl7-v2+er7",
        "data": base64.b64encode(raw).decode(),
    }
    bundle = await call(service, "POST", "$convert-hl7v2", binary)
    assert any(e["resource"]["resourceType"] == "Patient" for e in bundle["entry"])


async def test_refused_and_unmappable_messages(service: FhirService) -> None:
    with pytest.raises(BadRequest, match="AR 200"):
        await call(
            service,
            "POST",
            "$convert-hl7v2",
            parameters("MSH|^~\\&|A|B|C|D|20240101||QRY^A19|1|P|2.5.1\r"),
        )
    with pytest.raises(Unprocessable, match="AE 101 at PID\\^1\\^3"):
        await call(
            service,
            "POST",
            "$convert-hl7v2",
            parameters("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\rPID|1||\r"),
        )
    with pytest.raises(BadRequest):
        await call(service, "POST", "$convert-hl7v2", {"resourceType": "Parameters"})
