"""The R4 core definitions the server relies on cannot be hijacked by a stored resource.

A ValueSet or CodeSystem stored under a core canonical is stored (and served), but the
required-binding check of every write keeps using the core definition; the same for a
SearchParameter (see test_search_parameter_storage.py). On every engine, through the whole
service as `fhir-server serve` builds it.
"""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.assembly import build_service
from fhir_server.errors import InvalidResource
from fhir_server.interactions.service import FhirService
from fhir_server.settings import Settings
from fhir_server.storage.base import Storage
from tests.contract.test_custom_params import call

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER_CS = "http://hl7.org/fhir/administrative-gender"


async def service(storage: Storage) -> FhirService:
    return await build_service(Settings(), storage)


HIJACKERS: list[dict[str, Any]] = [
    {
        "resourceType": "ValueSet",
        "id": "gender-hijack",
        "url": GENDER_VS,
        "status": "active",
        "compose": {
            "include": [{"system": "http://example.org/genders", "concept": [{"code": "zz"}]}]
        },
    },
    {
        "resourceType": "CodeSystem",
        "id": "gender-hijack",
        "url": GENDER_CS,
        "status": "active",
        "content": "complete",
        "concept": [{"code": "zz"}],
    },
]


@pytest.mark.parametrize("hijacker", HIJACKERS, ids=lambda r: r["resourceType"])
async def test_a_stored_core_canonical_does_not_change_required_bindings(
    storage: Storage, hijacker: dict[str, Any]
) -> None:
    svc = await service(storage)
    await call(svc, "PUT", f"{hijacker['resourceType']}/{hijacker['id']}", hijacker)
    made = await call(svc, "POST", "Patient", {"resourceType": "Patient", "gender": "male"})
    assert made["gender"] == "male"
    with pytest.raises(InvalidResource, match=r"Patient\.gender"):
        await call(svc, "POST", "Patient", {"resourceType": "Patient", "gender": "zz"})
    restarted = await service(storage)  # the stored resource is loaded at start-up too
    again = await call(
        restarted, "POST", "Patient", {"resourceType": "Patient", "gender": "female"}
    )
    assert again["gender"] == "female"
