"""The comparison prefixes of number, quantity and date search, against the examples of the
FHIR R4 search page, on every engine.

https://hl7.org/fhir/R4/search.html#prefix and #number: `gt100` is "greater than exactly
100" (likewise lt, ge, le, sa, eb); only `eq`, `ne` and `ap` read the search value at its
implicit precision ("100" is [99.5, 100.5)), and `ap` is approximately (within 10%).
Values in resources are exact. Dates are ranges on both sides (#date), so the date rows
are the page's table of examples. `_filter` uses the same comparisons.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_server.context import SYSTEM
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage

UCUM = "http://unitsofmeasure.org"
HEIGHTS = {"h1796": 179.6, "h180": 180, "h1800": 180.0, "h1803": 180.3, "h1804": 180.4}
DOSES = {"d5.3": 5.3, "d5.4": 5.4, "d5.42": 5.42, "d5.45": 5.45}
PROBABILITIES = {
    "r99.4": 99.4,
    "r99.5": 99.5,
    "r100": 100,
    "r100.3": 100.3,
    "r100.5": 100.5,
    "r101": 101,
    "r111": 111,
}
# date examples: instants and days (Observation.effective), periods (Encounter.period)
MOMENTS = {
    "t14-00": "2013-01-14T00:00:00Z",
    "t14-10": "2013-01-14T10:00:00Z",
    "t15-00": "2013-01-15T00:00:00Z",
    "day14": "2013-01-14",
}
PERIODS = {
    "from-21-jan": {"start": "2013-01-21"},
    "from-15-mar": {"start": "2013-03-15"},
    "until-21-jan": {"end": "2013-01-21"},
}


def _observation(id: str, **value: object) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        **value,
    }


def _data() -> list[dict[str, Any]]:
    out = [
        _observation(id, valueQuantity={"value": v, "system": UCUM, "code": "cm"})
        for id, v in HEIGHTS.items()
    ]
    out += [
        _observation(id, valueQuantity={"value": v, "system": UCUM, "code": "mg"})
        for id, v in DOSES.items()
    ]
    out += [
        {
            "resourceType": "RiskAssessment",
            "id": id,
            "status": "final",
            "subject": {"reference": "Patient/x"},
            "prediction": [{"probabilityDecimal": v}],
        }
        for id, v in PROBABILITIES.items()
    ]
    out += [_observation(id, effectiveDateTime=moment) for id, moment in MOMENTS.items()]
    out += [
        {
            "resourceType": "Encounter",
            "id": id,
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "period": period,
        }
        for id, period in PERIODS.items()
    ]
    return out


@pytest.fixture
async def service(storage: Storage) -> FhirService:
    svc = FhirService(storage)
    for resource in _data():
        await svc.handle(
            Request(
                "PUT", f"{resource['resourceType']}/{resource['id']}", body=resource, context=SYSTEM
            )
        )
    return svc


async def ids(svc: FhirService, type: str, name: str, value: str) -> list[str]:
    response = await svc.handle(
        Request(
            "GET",
            type,
            ((name, value), ("_count", "100")),
            context=SYSTEM,
            headers={"prefer": "handling=strict"},
        )
    )
    body = response.body
    data = orjson.loads(body) if isinstance(body, bytes) else body
    return sorted(e["resource"]["id"] for e in data.get("entry", []))


def same(found: list[str], expected: list[str]) -> bool:
    return found == sorted(expected)


HEIGHT = f"|{UCUM}|cm"

QUANTITY = [  # the heights, then the spec's quantity examples
    (f"gt180{HEIGHT}", ["h1803", "h1804"]),  # 180.3 and 180.4 are above exactly 180
    (f"ge180{HEIGHT}", ["h180", "h1800", "h1803", "h1804"]),  # 179.6 is not
    (f"gt180.0{HEIGHT}", ["h1803", "h1804"]),  # 180 is not above 180.0
    (f"lt180{HEIGHT}", ["h1796"]),
    (f"le180{HEIGHT}", ["h180", "h1796", "h1800"]),
    (f"sa180{HEIGHT}", ["h1803", "h1804"]),
    (f"eb180{HEIGHT}", ["h1796"]),
    (f"180{HEIGHT}", ["h180", "h1796", "h1800", "h1803", "h1804"]),  # [179.5, 180.5)
    (f"eq180.0{HEIGHT}", ["h180", "h1800"]),  # [179.95, 180.05)
    (f"ne180.0{HEIGHT}", ["h1796", "h1803", "h1804"]),
    (f"le5.4|{UCUM}|mg", ["d5.3", "d5.4"]),  # "less than or equal to exactly 5.4"
    ("5.4||mg", ["d5.4", "d5.42"]),  # [5.35, 5.45): 5.45 is out
    ("ap5.4||mg", ["d5.3", "d5.4", "d5.42", "d5.45"]),  # within 10%
]

NUMBER = [  # https://hl7.org/fhir/R4/search.html#number, on RiskAssessment.probability
    ("100", ["r100", "r100.3", "r99.5"]),  # [99.5, 100.5)
    ("100.00", ["r100"]),  # [99.995, 100.005)
    ("lt100", ["r99.4", "r99.5"]),  # less than exactly 100
    ("le100", ["r100", "r99.4", "r99.5"]),
    ("gt100", ["r100.3", "r100.5", "r101", "r111"]),  # greater than exactly 100
    ("ge100", ["r100", "r100.3", "r100.5", "r101", "r111"]),
    ("ne100", ["r100.5", "r101", "r111", "r99.4"]),  # not in [99.5, 100.5)
    ("sa100", ["r100.3", "r100.5", "r101", "r111"]),
    ("eb100", ["r99.4", "r99.5"]),
    ("ap100", ["r100", "r100.3", "r100.5", "r101", "r99.4", "r99.5"]),  # 10%: not 111
    ("gt1e2", ["r100.3", "r100.5", "r101", "r111"]),  # exponent form, exact too
]

DATE = [  # https://hl7.org/fhir/R4/search.html#prefix, the table of date examples
    ("Observation", "eq2013-01-14", ["day14", "t14-00", "t14-10"]),  # not 15th 00:00
    ("Observation", "ne2013-01-14", ["t15-00"]),
    ("Observation", "lt2013-01-14T10:00:00Z", ["day14", "t14-00"]),  # day14: before 10am
    ("Observation", "gt2013-01-14T10:00:00Z", ["day14", "t15-00"]),  # day14: after 10am
    ("Encounter", "ge2013-03-14", ["from-15-mar", "from-21-jan"]),
    ("Encounter", "le2013-03-14", ["from-21-jan", "until-21-jan"]),
    ("Encounter", "sa2013-03-14", ["from-15-mar"]),
    ("Encounter", "eb2013-03-14", ["until-21-jan"]),
]


@pytest.mark.parametrize(("value", "expected"), QUANTITY)
async def test_quantity_prefixes(service: FhirService, value: str, expected: list[str]) -> None:
    assert same(await ids(service, "Observation", "value-quantity", value), expected)


@pytest.mark.parametrize(("value", "expected"), NUMBER)
async def test_number_prefixes(service: FhirService, value: str, expected: list[str]) -> None:
    assert same(await ids(service, "RiskAssessment", "probability", value), expected)


@pytest.mark.parametrize(("type", "value", "expected"), DATE)
async def test_date_prefixes(
    service: FhirService, type: str, value: str, expected: list[str]
) -> None:
    assert same(await ids(service, type, "date", value), expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gt 180", ["h1803", "h1804"]),
        ("ge 180", ["h180", "h1800", "h1803", "h1804"]),
        ("lt 180", ["h1796"]),
        ("eq 180.0", ["h180", "h1800"]),
    ],
)
async def test_filter_compares_like_the_prefixes(
    service: FhirService, value: str, expected: list[str]
) -> None:
    found = await ids(service, "Observation", "_filter", f"value-quantity {value}")
    assert same([i for i in found if i.startswith("h")], expected)
