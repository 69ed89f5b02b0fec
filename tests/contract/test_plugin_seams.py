"""The seams plug-ins attach through, on every engine: `watch`, `add_validator`,
`add_transform` and `add_trigger`."""

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


async def test_a_trigger_writes_with_the_version_and_rolls_back_with_it(storage: Storage) -> None:
    svc = FhirService(storage)
    fired: list[tuple[str, int]] = []

    async def derive(service: FhirService, tx: Any, rec: StoredResource) -> None:
        fired.append((rec.id, rec.version))
        if rec.id == "boom":
            raise InvalidResource("refused by the trigger", expression=("Basic",))
        if not rec.deleted:  # a derived resource in the same transaction
            derived = {"resourceType": "Basic", "code": {"text": f"from {rec.id}"}}
            await service.store(tx, "Basic", f"d-{rec.id}", derived, current=None, method="PUT")

    svc.add_trigger(("Patient",), derive)
    await svc.handle(
        Request("PUT", "Patient/p1", body={"resourceType": "Patient", "id": "p1"}, context=SYSTEM)
    )
    assert fired == [("p1", 1)]
    derived = await storage.read("Basic", "d-p1")
    assert derived is not None and b"from p1" in derived.data
    with pytest.raises(InvalidResource, match="refused by the trigger"):
        await svc.handle(
            Request(
                "PUT",
                "Patient/boom",
                body={"resourceType": "Patient", "id": "boom"},
                context=SYSTEM,
            )
        )
    assert await storage.read("Patient", "boom") is None  # rolled back with the trigger
    await svc.handle(Request("DELETE", "Patient/p1", context=SYSTEM))
    assert fired[-1] == ("p1", 2)


async def test_a_transform_rewrites_every_write_of_its_types_before_it_is_stored(
    storage: Storage,
) -> None:
    svc = FhirService(storage)

    def shout(resource: dict[str, Any]) -> dict[str, Any]:
        text = resource.get("code", {}).get("text")
        if text == "refuse":
            raise InvalidResource("refused by the transform", expression=("Basic.code",))
        return {**resource, "code": {"text": str(text).upper()}}

    svc.add_transform(("Basic",), shout)
    await put(svc, "b1", {**BASIC, "code": {"text": "created"}})
    stored = await storage.read("Basic", "b1")
    assert stored is not None and b'"CREATED"' in stored.data
    patch = [{"op": "replace", "path": "/code/text", "value": "patched"}]
    await svc.handle(Request("PATCH", "Basic/b1", body=patch, context=SYSTEM))
    stored = await storage.read("Basic", "b1")
    assert stored is not None and b'"PATCHED"' in stored.data and stored.version == 2
    entry = {"resource": {**BASIC, "id": "b2", "code": {"text": "bundled"}}}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{**entry, "request": {"method": "PUT", "url": "Basic/b2"}}],
    }
    await svc.handle(Request("POST", "", body=bundle, context=SYSTEM))
    stored = await storage.read("Basic", "b2")
    assert stored is not None and b'"BUNDLED"' in stored.data
    with pytest.raises(InvalidResource, match="refused by the transform"):
        await put(svc, "b3", {**BASIC, "code": {"text": "refuse"}})
    assert await storage.read("Basic", "b3") is None
    await svc.handle(  # other types are not transformed
        Request("PUT", "Patient/p1", body={"resourceType": "Patient", "id": "p1"}, context=SYSTEM)
    )
