"""Every interaction passes the access policy: with DenyAll, a user context gets 403 everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_server.context import ANONYMOUS, SYSTEM, DenyAll
from fhir_server.errors import Forbidden
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.sqlite import SQLiteStorage

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}
PATCH = [{"op": "replace", "path": "/gender", "value": "male"}]
BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [{"resource": PATIENT, "request": {"method": "PUT", "url": "Patient/p1"}}],
}

REQUESTS = [
    ("GET", "Patient/p1", None, ()),
    ("GET", "Patient/p1/_history/1", None, ()),
    ("GET", "Patient/p1/_history", None, ()),
    ("GET", "Patient/_history", None, ()),
    ("GET", "_history", None, ()),
    ("GET", "Patient", None, (("gender", "female"),)),
    ("GET", "", None, (("_type", "Patient"),)),
    ("POST", "Patient", PATIENT, ()),
    ("PUT", "Patient/p1", PATIENT, ()),
    ("PUT", "Patient", PATIENT, (("gender", "female"),)),
    ("PATCH", "Patient/p1", PATCH, ()),
    ("DELETE", "Patient/p1", None, ()),
    ("DELETE", "Patient", None, (("gender", "female"),)),
]


@pytest.fixture
async def service(tmp_path: Path):
    storage = SQLiteStorage(tmp_path / "seam.db")
    await storage.open()
    svc = FhirService(storage, policy=DenyAll())
    await svc.handle(Request("PUT", "Patient/p1", body=PATIENT, context=SYSTEM))
    yield svc
    await storage.close()


@pytest.mark.parametrize(("method", "path", "body", "query"), REQUESTS)
async def test_user_context_is_refused(service, method, path, body, query) -> None:
    with pytest.raises(Forbidden):
        await service.handle(Request(method, path, query, body=body, context=ANONYMOUS))


async def test_transaction_entries_pass_the_policy_too(service) -> None:
    with pytest.raises(Forbidden):
        await service.handle(Request("POST", "", body=BUNDLE, context=ANONYMOUS))


async def test_system_context_passes(service) -> None:
    response = await service.handle(Request("GET", "Patient/p1", context=SYSTEM))
    assert response.status == 200
