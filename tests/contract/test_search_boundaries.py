"""Searches at and beyond their bounds, on every engine: many OR values work, and input
that no search can honour is a 400 naming the parameter (never a 500, never unbounded).

SQLite refuses a compound SELECT of more than 500 terms and an expression deeper than
1,000, so an OR of a thousand values must not be a UNION of a thousand SELECTs; MongoDB
and SQLite hold 64-bit integers; Python's `int()` reads "١" as 1; a decimal like
`1e999999999` is beyond every float. The bounds themselves are `SearchLimits`.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from fhir_server.context import SYSTEM
from fhir_server.errors import BadRequest
from fhir_server.interactions.request import Request, Response
from fhir_server.interactions.service import FhirService
from fhir_server.search.limits import DEFAULT_LIMITS, SearchLimits
from fhir_server.storage.base import Storage

UCUM = "http://unitsofmeasure.org"
PATIENTS = 12
MANY = 2000  # well beyond SQLite's 500 compound SELECT terms and 1,000 expression depth


def _patient(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"p{n}",
        "gender": "female",
        "birthDate": f"19{50 + n}-03-04",
        "name": [{"family": f"Family{n}"}],
        "identifier": [{"system": "urn:mrn", "value": f"m{n}"}],
    }


def _observation(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "subject": {"reference": f"Patient/p{n}"},
        "valueQuantity": {"value": 150 + n, "system": UCUM, "code": "cm"},
    }


async def _filled(storage: Storage, limits: SearchLimits) -> FhirService:
    svc = FhirService(storage, search_limits=limits)
    for n in range(PATIENTS):
        for resource in (_patient(n), _observation(n)):
            await svc.handle(
                Request(
                    "PUT",
                    f"{resource['resourceType']}/{resource['id']}",
                    body=resource,
                    context=SYSTEM,
                )
            )
    return svc


@pytest.fixture
async def roomy(storage: Storage) -> FhirService:
    """Limits raised well above MANY: what is tested is the engine, not the limit."""
    return await _filled(
        storage, SearchLimits(max_or_values=10 * MANY, max_query_bytes=1024 * 1024)
    )


@pytest.fixture
async def service(storage: Storage) -> FhirService:
    return await _filled(storage, DEFAULT_LIMITS)


async def get(svc: FhirService, path: str, *params: tuple[str, str]) -> Response:
    return await svc.handle(Request("GET", path, params, context=SYSTEM))


async def ids(svc: FhirService, type: str, *params: tuple[str, str]) -> list[str]:
    response = await get(svc, type, *params, ("_count", "100"))
    body = response.body
    data = orjson.loads(body) if isinstance(body, bytes) else body
    return sorted(
        e["resource"]["id"] for e in data.get("entry", []) if e["search"]["mode"] == "match"
    )


def many(make: str, wanted: list[int], count: int = MANY, start: int = 10_000) -> str:
    """`count` comma-separated values from `make` (formatted with n): the wanted numbers
    spread through numbers from `start` on, which match nothing."""
    values = [make.format(n=start + n) for n in range(count - len(wanted))]
    for at, n in enumerate(wanted):
        values.insert(at * count // len(wanted), make.format(n=n))
    return ",".join(values)


# -- many OR values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type", "name", "make", "wanted"),
    [
        ("Patient", "_id", "p{n}", [3, 7, 11]),
        ("Patient", "identifier", "urn:mrn|m{n}", [3, 7, 11]),  # token system|code
        ("Patient", "identifier", "m{n}", [3, 7, 11]),  # token code
        ("Patient", "family", "Family{n}", [3, 7, 11]),  # string prefixes: index ranges
        ("Patient", "birthdate", "{n}-03-04", [1953, 1957, 1961]),  # date ranges
        ("Observation", "subject", "Patient/p{n}", [3, 7, 11]),  # references
    ],
)
async def test_a_thousand_or_values_find_what_they_name(
    roomy: FhirService, type: str, name: str, make: str, wanted: list[int]
) -> None:
    expected = sorted(f"{type[0].lower()}{n % 50}" for n in wanted)
    values = many(make, wanted, start=2100 if name == "birthdate" else 10_000)
    assert await ids(roomy, type, (name, values)) == expected
    # and as a test of the rows that another clause drives
    assert await ids(roomy, type, (name, values), ("_id", expected[0])) == [expected[0]]


async def test_many_or_values_through_a_chain_and_a_filter(roomy: FhirService) -> None:
    chained = many("Family{n}", [2, 9])
    assert await ids(roomy, "Observation", ("subject:Patient.name", chained)) == ["o2", "o9"]
    ors = " or ".join(f"identifier eq urn:mrn|m{n}" for n in [4, *range(10_000, 10_700), 8])
    assert await ids(roomy, "Patient", ("_filter", ors)) == ["p4", "p8"]


async def test_many_negated_values(roomy: FhirService) -> None:
    # :not of many values: each is a NOT EXISTS, OR-ed (most are not there: all match)
    found = await ids(roomy, "Patient", ("identifier:not", many("m{n}", [1])))
    assert len(found) == PATIENTS


async def test_the_default_or_limit_takes_a_thousand_values(service: FhirService) -> None:
    limit = DEFAULT_LIMITS.max_or_values
    assert limit >= 1000
    assert await ids(service, "Patient", ("_id", many("p{n}", [5], limit))) == ["p5"]
    with pytest.raises(BadRequest) as raised:
        await ids(service, "Patient", ("identifier", many("m{n}", [5], limit + 1)))
    assert raised.value.status == 400
    assert raised.value.issues[0].expression == ("identifier",)
    assert raised.value.issues[0].code == "too-costly"


# -- input no search can honour -----------------------------------------------------------


def _page(key: list[object]) -> str:
    data = orjson.dumps({"s": "", "b": False, "k": key})
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("Patient", [("_filter", "(" * 400 + "name eq x" + ")" * 400)], "_filter"),
        ("Patient", [("_filter", "not (" * 400 + "name eq x" + ")" * 400)], "_filter"),
        ("Patient", [("_filter", " or ".join(["name eq x"] * 1001))], "_filter"),
        ("Observation", [("value-quantity", "1e999999999")], "value-quantity"),
        ("Observation", [("value-quantity", f"gt1e999999999|{UCUM}|cm")], "value-quantity"),
        ("Observation", [("value-quantity", "ap-1e400")], "value-quantity"),
        ("RiskAssessment", [("probability", "gt1e309")], "probability"),
        (
            "Observation",
            [("component-code-value-quantity", "8480-6$1e999999999")],
            "component-code-value-quantity",
        ),
        ("Patient", [("_offset", "99999999999999999999")], "_offset"),
        ("Patient", [("_offset", "9223372036854775808")], "_offset"),
        ("Patient", [("_offset", "١")], "_offset"),
        ("Patient", [("_count", "²")], "_count"),
        ("Patient", [("_page", _page([2**63]))], "_page"),
        ("Patient", [("_page", _page([18446744073709551615]))], "_page"),
        ("Patient", [("_sort", ",".join(["name"] * 200))], "_sort"),
        ("Patient", [("_include", "Patient:organization")] * 40, "_include"),
        ("Patient", [("name", "x" * 70_000)], "name"),
        ("Patient", [("name", "x" * 3000)], "name"),
        ("Patient", [("_id", ",".join(f"x{n}" for n in range(1001)))], "_id"),
        ("Patient", [("gender:not", f"x{n}") for n in range(101)], "gender:not"),
        ("Patient/p1/_history/²", [], "_history"),
        ("Patient/p1/_history/١", [], "_history"),  # not version 1
        ("Patient/p1/_history/99999999999999999999", [], "_history"),
        ("Patient/p1/_history/0", [], "_history"),
        ("Patient/_history", [("_offset", "99999999999999999999")], "_offset"),
        ("_history", [("_count", "²")], "_count"),
        ("Patient/p1/_history", [("_offset", "١")], "_offset"),
    ],
)
async def test_refused_with_the_parameter_named(
    service: FhirService, path: str, params: list[tuple[str, str]], named: str
) -> None:
    with pytest.raises(BadRequest) as raised:
        await get(service, path, *params)
    assert raised.value.status == 400
    assert raised.value.issues[0].expression == (named,)


async def test_a_version_in_ascii_digits_is_still_read(service: FhirService) -> None:
    response = await get(service, "Patient/p1/_history/1")
    assert response.status == 200


async def test_links_never_carry_more_than_the_limit_allowed(service: FhirService) -> None:
    value = "x" * (DEFAULT_LIMITS.max_value_chars)
    response = await get(service, "Patient", ("name", value), ("_count", "1"))
    body = response.body
    data: Any = orjson.loads(body) if isinstance(body, bytes) else body
    longest = max(len(link["url"]) for link in data["link"])
    assert longest < DEFAULT_LIMITS.max_query_bytes + 200


async def test_numbers_whose_exponent_is_beyond_a_double(service: FhirService) -> None:
    """`0e999999999` stands for 0 ± 5e999999998 (every value); `1e-999999999` for a range
    no float is in (nothing); `ne` of it for every value. Each engine answers them."""
    every = sorted(f"o{n}" for n in range(PATIENTS))
    assert await ids(service, "Observation", ("value-quantity", "0e999999999")) == every
    assert await ids(service, "Observation", ("value-quantity", "1e-999999999")) == []
    assert await ids(service, "Observation", ("value-quantity", "ne1e-999999999")) == every
    assert (
        await ids(service, "Observation", ("_filter", "value-quantity gt -1e-999999999")) == every
    )
