"""Differential property test: the two engines find the same resources for any search.

Hypothesis generates small sets of Patients and Observations (values drawn from narrow
pools so searches hit) and searches over them: every parameter type, prefixes,
modifiers, OR lists, AND of several parameters, chains and `_has`. Both engines (SQLite
on a file, MongoDB on mongomock) load the same resources through the same service and
must answer each search alike: the same ids, or the same error status.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import date
from pathlib import Path
from typing import Any, cast

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.context import SYSTEM
from fhir_server.errors import FhirError
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage
from fhir_server.storage.mongodb import MongoStorage
from fhir_server.storage.sqlite import SQLiteStorage
from tests.support.mongomock_async import mock_database

FAMILIES = ["Smith", "Smithson", "Müller", "muller", "O'Brien", "Ng"]
GENDERS = ["male", "female", "other", "unknown"]
SYSTEMS = ["urn:a", "urn:b"]
LOINC = "http://loinc.org"
CODES = ["8480-6", "8462-4", "2339-0"]
UCUM = "http://unitsofmeasure.org"
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
PATIENTS = 6

dates = st.dates(min_value=date(1990, 1, 1), max_value=date(1991, 12, 31))


@st.composite
def fhir_date(draw: st.DrawFn) -> str:
    day = draw(dates).isoformat()
    return day[: draw(st.sampled_from([4, 7, 10]))]


@st.composite
def date_time(draw: st.DrawFn) -> str:
    day = draw(dates).isoformat()
    kind = draw(st.sampled_from(["date", "month", "time"]))
    if kind == "month":
        return day[:7]
    if kind == "date":
        return day
    hour = draw(st.integers(0, 23))
    zone = draw(st.sampled_from(["Z", "+02:00", "-05:00"]))
    return f"{day}T{hour:02d}:30:00{zone}"


@st.composite
def patient(draw: st.DrawFn, index: int) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": f"p{index}"}
    if draw(st.booleans()):
        resource["gender"] = draw(st.sampled_from(GENDERS))
    if draw(st.booleans()):
        resource["birthDate"] = draw(fhir_date())
    names = draw(st.lists(st.sampled_from(FAMILIES), max_size=2))
    if names:
        resource["name"] = [{"family": n} for n in names]
    ids = draw(
        st.lists(st.tuples(st.sampled_from(SYSTEMS), st.sampled_from(["1", "2", "3"])), max_size=2)
    )
    if ids:
        resource["identifier"] = [{"system": s, "value": v} for s, v in ids]
    if draw(st.booleans()):
        resource["active"] = draw(st.booleans())
    return resource


@st.composite
def observation(draw: st.DrawFn, index: int) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o{index}",
        "status": draw(st.sampled_from(["final", "preliminary"])),
        "code": {"coding": [{"system": LOINC, "code": draw(st.sampled_from(CODES))}]},
    }
    if draw(st.booleans()):
        resource["subject"] = {"reference": f"Patient/p{draw(st.integers(0, PATIENTS - 1))}"}
    if draw(st.booleans()):
        resource["effectiveDateTime"] = draw(date_time())
    if draw(st.booleans()):
        value = draw(st.sampled_from([90, 100, 100.5, 120, 1.5e2]))
        resource["valueQuantity"] = {"value": value, "system": UCUM, "code": "mm[Hg]"}
    return resource


@st.composite
def resources(draw: st.DrawFn) -> list[dict[str, Any]]:
    patients = [draw(patient(i)) for i in range(PATIENTS)]
    count = draw(st.integers(0, 10))
    return patients + [draw(observation(i)) for i in range(count)]


def _prefixed(value: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from(PREFIXES), value).map("".join)


def _or(value: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(value, min_size=1, max_size=2).map(",".join)


patient_params = st.one_of(
    st.tuples(st.just("gender"), _or(st.sampled_from(GENDERS))),
    st.tuples(st.just("gender:not"), st.sampled_from(GENDERS)),
    st.tuples(
        st.sampled_from(["gender:missing", "birthdate:missing", "name:missing"]),
        st.sampled_from(["true", "false"]),
    ),
    st.tuples(st.just("birthdate"), _or(_prefixed(fhir_date()))),
    st.tuples(
        st.sampled_from(["name", "family", "name:exact", "name:contains"]),
        _or(st.sampled_from(["smi", "Smith", "mul", "Müller", "o'b", "son", "ng"])),
    ),
    st.tuples(
        st.just("identifier"), _or(st.sampled_from(["urn:a|1", "urn:b|2", "1", "urn:a|", "|3"]))
    ),
    st.tuples(st.just("active"), st.sampled_from(["true", "false"])),
    st.tuples(st.just("_id"), _or(st.sampled_from([f"p{i}" for i in range(PATIENTS)]))),
    st.tuples(
        st.just("_has:Observation:subject:code"), st.sampled_from([f"{LOINC}|{c}" for c in CODES])
    ),
)
observation_params = st.one_of(
    st.tuples(
        st.sampled_from(["code", "code:not"]),
        _or(st.sampled_from([f"{LOINC}|{c}" for c in CODES] + CODES)),
    ),
    st.tuples(st.just("status"), st.sampled_from(["final", "preliminary"])),
    st.tuples(st.just("date"), _or(_prefixed(date_time()))),
    st.tuples(
        st.just("value-quantity"),
        _prefixed(
            st.sampled_from(
                ["100", "100.5", "1e2", "120|http://unitsofmeasure.org|mm[Hg]", "90||mm[Hg]"]
            )
        ),
    ),
    st.tuples(
        st.sampled_from(["subject", "patient"]),
        _or(st.sampled_from([f"Patient/p{i}" for i in range(PATIENTS)])),
    ),
    st.tuples(
        st.sampled_from(["subject:missing", "value-quantity:missing"]),
        st.sampled_from(["true", "false"]),
    ),
    st.tuples(
        st.sampled_from(["subject:Patient.gender", "patient.gender"]), st.sampled_from(GENDERS)
    ),
    st.tuples(st.just("subject:Patient.name"), st.sampled_from(["smi", "mul"])),
)
searches = st.one_of(
    st.tuples(st.just("Patient"), st.lists(patient_params, min_size=1, max_size=3)),
    st.tuples(st.just("Observation"), st.lists(observation_params, min_size=1, max_size=3)),
)


async def _answer(svc: FhirService, type: str, params: list[tuple[str, str]]) -> object:
    query = (*params, ("_count", "1000"))
    try:
        response = await svc.handle(
            Request("GET", type, query, context=SYSTEM, headers={"prefer": "handling=strict"})
        )
    except FhirError as error:
        return f"error {error.status}"
    body = response.body
    data = orjson.loads(body) if isinstance(body, bytes) else cast(dict[str, Any], body)
    return sorted(e["resource"]["id"] for e in data.get("entry", []))


async def _run(
    data: list[dict[str, Any]], queries: list[tuple[str, list[tuple[str, str]]]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        sqlite = SQLiteStorage(Path(folder) / "diff.db")
        mongo = MongoStorage(cast(Any, mock_database()))
        engines: list[Storage] = [sqlite, mongo]
        for engine in engines:
            await engine.open()
        try:
            services = [FhirService(engine) for engine in engines]
            for svc in services:
                for resource in data:
                    await svc.handle(
                        Request(
                            "PUT",
                            f"{resource['resourceType']}/{resource['id']}",
                            body=resource,
                            context=SYSTEM,
                        )
                    )
            for type, params in queries:
                answers = [await _answer(svc, type, params) for svc in services]
                assert answers[0] == answers[1], (type, params, answers)
        finally:
            for engine in engines:
                await engine.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=resources(), queries=st.lists(searches, min_size=1, max_size=8))
def test_both_engines_find_the_same_resources(
    data: list[dict[str, Any]], queries: list[tuple[str, list[tuple[str, str]]]]
) -> None:
    asyncio.run(_run(data, queries))
