"""One rule for "the current, visible version of Type/id", on every engine.

read, vread, delete, `$everything` and the terminology instance operations all answer
404 for what never existed, 410 with the deletion's ETag for what was deleted, and 403
for what the access policy hides (https://hl7.org/fhir/R4/http.html#read).
"""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.context import ANONYMOUS, SYSTEM, AccessContext, AllowAll
from fhir_server.errors import Forbidden, Gone, NotFound
from fhir_server.interactions.everything import everything_operation
from fhir_server.interactions.request import Request, Response
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage, StoredResource
from terminology.service import install

CODE_SYSTEM = {
    "resourceType": "CodeSystem",
    "url": "http://example.org/cs",
    "status": "active",
    "content": "complete",
    "concept": [{"code": "a", "display": "A"}],
}
PATIENT = {"resourceType": "Patient", "gender": "female"}

# (method, path, query) per interaction; {type} and {id} are filled in
CALLS = {
    "read": ("GET", "{type}/{id}", ()),
    "vread": ("GET", "{type}/{id}/_history/{version}", ()),
    "everything": ("GET", "{type}/{id}/$everything", ()),
    "lookup": ("GET", "{type}/{id}/$lookup", (("code", "a"),)),
    "expand": ("GET", "{type}/{id}/$expand", ()),
}
TYPE_OF = {"everything": "Patient", "lookup": "CodeSystem", "expand": "ValueSet"}


class HideSecret(AllowAll):
    """Every resource whose id is `secret` is invisible to non-system callers."""

    def visible(self, ctx: AccessContext, rec: StoredResource) -> bool:
        return ctx.system or rec.id != "secret"


def body_of(type: str, id: str) -> dict[str, Any]:
    if type == "CodeSystem":
        return {**CODE_SYSTEM, "url": f"http://example.org/{id}"}
    if type == "ValueSet":
        return {
            "resourceType": "ValueSet",
            "status": "active",
            "compose": {"include": [{"system": CODE_SYSTEM["url"]}]},
        }
    return PATIENT


@pytest.fixture
async def service(storage: Storage) -> FhirService:
    svc = FhirService(storage, base_url="http://test/fhir", policy=HideSecret())
    svc.add_operation(everything_operation())
    await install(svc)
    await svc.handle(
        Request("PUT", "CodeSystem/cs", body={**CODE_SYSTEM, "id": "cs"}, context=SYSTEM)
    )
    for type in ("Patient", "CodeSystem", "ValueSet"):
        for id in ("secret", "deleted"):
            await svc.handle(
                Request("PUT", f"{type}/{id}", body={**body_of(type, id), "id": id}, context=SYSTEM)
            )
        await svc.handle(Request("DELETE", f"{type}/deleted", context=SYSTEM))
    return svc


async def call(
    svc: FhirService, name: str, id: str, version: int = 1, ctx: AccessContext = ANONYMOUS
) -> Response:
    method, path, query = CALLS[name]
    type = TYPE_OF.get(name, "Patient")
    path = path.format(type=type, id=id, version=version)
    return await svc.handle(Request(method, path, query, context=ctx))


@pytest.mark.parametrize("name", list(CALLS))
async def test_unknown_is_404(service: FhirService, name: str) -> None:
    with pytest.raises(NotFound):
        await call(service, name, "nobody")


@pytest.mark.parametrize("name", list(CALLS))
async def test_hidden_is_403(service: FhirService, name: str) -> None:
    with pytest.raises(Forbidden):
        await call(service, name, "secret")


@pytest.mark.parametrize("name", list(CALLS))
async def test_deleted_is_410_with_its_etag(service: FhirService, name: str) -> None:
    with pytest.raises(Gone) as raised:
        await call(service, name, "deleted", version=2)  # vread of the deletion itself
    assert raised.value.headers == {"ETag": 'W/"2"'}


@pytest.mark.parametrize("name", list(CALLS))
async def test_what_the_caller_may_see_answers(service: FhirService, name: str) -> None:
    assert (await call(service, name, "secret", ctx=SYSTEM)).status == 200


async def test_delete_follows_the_rule(service: FhirService) -> None:
    for id in ("nobody", "deleted"):  # nothing to delete: success
        response = await service.handle(Request("DELETE", f"Patient/{id}", context=ANONYMOUS))
        assert response.status == 204
    with pytest.raises(Forbidden):
        await service.handle(Request("DELETE", "Patient/secret", context=ANONYMOUS))
    read = await service.handle(Request("GET", "Patient/secret", context=SYSTEM))
    assert read.status == 200  # still there
