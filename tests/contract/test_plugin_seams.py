"""The seams plug-ins attach through, on every engine: `watch` and `add_validator`."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.context import SYSTEM
from fhir_server.errors import InvalidResource
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage, StoredResource

BASIC = {"resourceType": "Basic", "code": {"text": "note"}}


async def put(svc: FhirService, id: str, body: dict[str, Any] | None = None) -> None:
    method, resource = ("DELETE", None) if body is None else ("PUT", {**body, "id": id})
    await svc.handle(Request(method, f"Basic/{id}", body=resource, context=SYSTEM))


async def test_watch_sees_the_current_resources_then_each_commit(storage: Storage) -> None:
    svc = FhirService(storage)
    await put(svc, "old", BASIC)
    await put(svc, "gone", BASIC)
    await put(svc, "gone")
    seen: list[tuple[str, int, bool]] = []

    def apply(rec: StoredResource) -> None:
        seen.append((rec.id, rec.version, rec.deleted))

    await svc.watch(("Basic",), apply)
    assert seen == [("old", 1, False)]  # deleted resources are not current
    await put(svc, "new", BASIC)
    await put(svc, "old")
    assert seen == [("old", 1, False), ("new", 1, False), ("old", 2, True)]


async def test_a_validator_sees_every_write(storage: Storage) -> None:
    svc = FhirService(storage)

    def no_notes(resource: dict[str, Any]) -> None:
        if resource.get("code", {}).get("text") == "note":
            raise InvalidResource("no notes here", expression=("Basic.code",))

    svc.add_validator(no_notes)
    with pytest.raises(InvalidResource, match="no notes"):
        await put(svc, "b1", BASIC)
    await put(svc, "b2", {**BASIC, "code": {"text": "fine"}})
