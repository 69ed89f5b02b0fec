"""State kept in each process's memory follows changes made through another process.

Two `FhirService` instances over one database stand for two server processes (or two
machines on one MongoDB): a custom SearchParameter and a CodeSystem created, changed or
deleted through one are in effect in the other within a second, on every engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from fhir_server.errors import BadRequest
from fhir_server.interactions import custom_params
from fhir_server.interactions.service import FhirService
from fhir_server.search.registry import build_registry
from fhir_server.storage.base import Storage
from terminology.registry import Terminology
from terminology.service import install as install_terminology
from tests.contract.test_coordination import second
from tests.contract.test_custom_params import blue_ids, call, eye_colour_param, patient

WITHIN = 1.0  # seconds, the promise
SYSTEM_URL = "http://example.org/fhir/CodeSystem/colours"


async def make_service(storage: Storage) -> tuple[FhirService, Terminology]:
    svc = FhirService(storage, base_url="http://test/fhir", registry=build_registry())
    await custom_params.install(svc)
    return svc, await install_terminology(svc)


@pytest.fixture
async def pair(storage: Storage) -> AsyncIterator[tuple[FhirService, FhirService, Terminology]]:
    """Service `a` and service `b` (and b's terminology) on the same database."""
    other = await second(storage)
    try:
        a, _ = await make_service(storage)
        b, b_terms = await make_service(other)
        yield a, b, b_terms
    finally:
        await other.close()


async def within(seconds: float, check: Callable[[], Awaitable[bool]]) -> float:
    """How long until `check()` holds (polled); fails after `seconds`."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < seconds, f"not in effect within {seconds} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_a_search_parameter_made_in_one_process_works_in_the_other(
    pair: tuple[FhirService, FhirService, Terminology],
) -> None:
    a, b, _ = pair
    with pytest.raises(BadRequest):
        await blue_ids(b)
    await call(a, "PUT", "SearchParameter/eye-colour", eye_colour_param())
    blue = (await call(a, "POST", "Patient", patient("blue")))["id"]

    async def b_finds_it() -> bool:
        try:
            return await blue_ids(b) == {blue}
        except BadRequest:
            return False

    await within(WITHIN, b_finds_it)
    b_blue = (await call(b, "POST", "Patient", patient("blue")))["id"]  # b indexes it too
    assert await blue_ids(a) == {blue, b_blue}

    await call(a, "PUT", "SearchParameter/eye-colour", eye_colour_param("retired"))

    async def b_forgot_it() -> bool:
        try:
            await blue_ids(b)
        except BadRequest:
            return True
        return False

    await within(WITHIN, b_forgot_it)


def colours(*codes: str) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "id": "colours",
        "url": SYSTEM_URL,
        "status": "active",
        "content": "complete",
        "concept": [{"code": c, "display": c.title()} for c in codes],
    }


async def test_a_code_system_change_reaches_the_other_process(
    pair: tuple[FhirService, FhirService, Terminology],
) -> None:
    a, _, terms = pair

    def b_knows(code: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            await _touch(pair[1])
            found = terms.code_system(SYSTEM_URL)
            return found is not None and found.get(code) is not None

        return check

    await call(a, "PUT", "CodeSystem/colours", colours("blue"))
    await within(WITHIN, b_knows("blue"))
    await call(a, "PUT", "CodeSystem/colours", colours("blue", "green"))
    await within(WITHIN, b_knows("green"))
    await call(a, "DELETE", "CodeSystem/colours")

    async def b_forgot() -> bool:
        await _touch(pair[1])
        return terms.code_system(SYSTEM_URL) is None

    await within(WITHIN, b_forgot)


async def _touch(svc: FhirService) -> None:
    """A request to `svc` (what makes a process look for others' changes)."""
    await call(svc, "GET", "metadata")
