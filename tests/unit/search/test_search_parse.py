"""Parsing search URLs into conditions, with expectations worked out from the R4 search page.

https://hl7.org/fhir/R4/search.html
"""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import (
    DateCondition,
    IdCondition,
    LastUpdatedCondition,
    MissingCondition,
    NumberCondition,
    QuantityCondition,
    ReferenceCondition,
    SortKey,
    StringCondition,
    TokenCondition,
    UriCondition,
)
from fhir_server.search.parse import ParsedSearch, parse_search
from fhir_server.search.registry import load_registry

UCUM = "http://unitsofmeasure.org"


def parse(
    type: str | tuple[str, ...], *params: tuple[str, str], strict: bool = True, **options: object
) -> ParsedSearch:
    types = (type,) if isinstance(type, str) else type
    return parse_search(load_registry(), types, list(params), strict=strict, **options)  # type: ignore[arg-type]


def only(type: str, name: str, value: str, **options: Any) -> object:
    """The single condition `name=value` parses to."""
    clauses = parse(type, (name, value), **options).query.clauses
    assert len(clauses) == 1 and len(clauses[0]) == 1, clauses
    return clauses[0][0]


# -- token -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "system", "code"),
    [
        ("http://loinc.org|8867-4", "http://loinc.org", "8867-4"),  # system and code
        ("|8867-4", "", "8867-4"),  # code with no system
        ("http://loinc.org|", "http://loinc.org", None),  # any code in the system
        ("8867-4", None, "8867-4"),  # code in any system
        (r"a\|b|c\,d", "a|b", "c,d"),  # escaped separators
    ],
)
def test_token_forms(value: str, system: str | None, code: str | None) -> None:
    assert only("Observation", "code", value) == TokenCondition("code", system, code)


def test_token_not_and_boolean() -> None:
    assert only("Patient", "gender:not", "male") == TokenCondition("gender", None, "male", True)
    assert only("Patient", "active", "true") == TokenCondition("active", None, "true")


# -- string ----------------------------------------------------------------------------


def test_string_default_exact_contains() -> None:
    assert only("Patient", "name", "Zoë") == StringCondition("name", "zoe", "start")
    assert only("Patient", "name:exact", "Zoë") == StringCondition("name", "Zoë", "exact")
    assert only("Patient", "family:contains", "ALM") == StringCondition("family", "alm", "contains")


# -- reference -------------------------------------------------------------------------


def test_reference_forms() -> None:
    assert only("Observation", "subject", "Patient/23") == ReferenceCondition(
        "subject", "Patient", "23"
    )
    assert only("Observation", "subject:Patient", "23") == ReferenceCondition(
        "subject", "Patient", "23"
    )
    # subject may be Group, Device, Patient or Location: a bare id leaves the type open
    assert only("Observation", "subject", "23") == ReferenceCondition("subject", None, "23")
    # Observation.patient is Observation.subject.where(resolve() is Patient)
    assert only("Observation", "patient", "23") == ReferenceCondition("patient", "Patient", "23")
    assert only(
        "Patient", "general-practitioner", "Practitioner/7/_history/2"
    ) == ReferenceCondition("general-practitioner", "Practitioner", "7", None, "2")
    assert only("Observation", "subject", "http://other.org/fhir/Patient/9") == ReferenceCondition(
        "subject", url="http://other.org/fhir/Patient/9"
    )
    assert only(
        "Observation", "subject", "http://srv/fhir/Patient/9", base="http://srv/fhir"
    ) == ReferenceCondition("subject", "Patient", "9")


def test_canonical_reference_with_version() -> None:
    assert only(
        "QuestionnaireResponse", "questionnaire", "http://example.org/Questionnaire/phq9|2.1"
    ) == ReferenceCondition(
        "questionnaire", url="http://example.org/Questionnaire/phq9", version="2.1"
    )


def test_reference_type_modifier_must_be_a_target() -> None:
    with pytest.raises(BadRequest, match="subject"):
        parse("Observation", ("subject:Medication", "1"))
    lenient = parse("Observation", ("subject:Medication", "1"), strict=False)
    assert lenient.ignored == ["subject:Medication"] and not lenient.query.clauses


# -- date ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "prefix", "low", "high"),
    [
        ("1990", "eq", "1990-01-01T00:00:00.000000Z", "1990-12-31T23:59:59.999999Z"),
        ("ge1990-03", "ge", "1990-03-01T00:00:00.000000Z", "1990-03-31T23:59:59.999999Z"),
        ("lt2000-02-29", "lt", "2000-02-29T00:00:00.000000Z", "2000-02-29T23:59:59.999999Z"),
        ("sa2013-01-14T10:00", "sa", "2013-01-14T10:00:00.000000Z", "2013-01-14T10:00:59.999999Z"),
        (
            "eb2013-01-14T10:00:00+10:00",
            "eb",
            "2013-01-14T00:00:00.000000Z",
            "2013-01-14T00:00:00.999999Z",
        ),
        ("ap2020-05-05", "ap", "2020-05-05T00:00:00.000000Z", "2020-05-05T23:59:59.999999Z"),
        ("ne2020", "ne", "2020-01-01T00:00:00.000000Z", "2020-12-31T23:59:59.999999Z"),
    ],
)
def test_date_prefixes_and_precision(value: str, prefix: str, low: str, high: str) -> None:
    assert only("Patient", "birthdate", value) == DateCondition("birthdate", prefix, low, high)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["not-a-date", "2020-13", "2020-02-30", "gt", "19901"])
def test_bad_date_names_the_parameter(value: str) -> None:
    for strict in (True, False):
        with pytest.raises(BadRequest) as raised:
            parse("Patient", ("birthdate", value), strict=strict)
        assert "birthdate" in raised.value.diagnostics
        assert raised.value.issues[0].expression == ("birthdate",)


# -- number and quantity ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "prefix", "low", "high"),
    [
        ("100", "eq", 99.5, 100.5),  # 3 significant figures
        ("100.00", "eq", 99.995, 100.005),  # 5 significant figures
        ("1e2", "eq", 50.0, 150.0),  # 1 significant figure: half of 1e2 either side
        ("ne100", "ne", 99.5, 100.5),
        ("gt0.8", "gt", 0.8, 0.8),  # "greater than exactly 0.8"
        ("le-3", "le", -3.0, -3.0),
        ("ap100", "ap", 90.0, 110.0),  # within 10%
        ("ap0.8", "ap", 0.72, 0.88),
        # exponents beyond a double's: the floats the exact range gives (the fuzz test's)
        ("1e-999999999", "eq", 0.0, -5e-324),  # [5e-1000000000, 1.5e-999999999): no float
        ("ap-1e-999999999", "ap", 0.0, 0.0),
        ("0e999999999", "eq", -math.inf, sys.float_info.max),  # 0 ± 5e999999998: any
        ("ne0e-999999999", "ne", 0.0, -5e-324),
    ],
)
def test_number_ranges(value: str, prefix: str, low: float, high: float) -> None:
    found = only("RiskAssessment", "probability", value)
    assert isinstance(found, NumberCondition)
    assert found.prefix == prefix
    assert (found.low, found.high) == pytest.approx((low, high))


def test_quantity_forms() -> None:
    assert only("Observation", "value-quantity", f"gt5.4|{UCUM}|mg") == QuantityCondition(
        "value-quantity", "gt", 5.4, 5.4, UCUM, "mg"
    )
    found = only("Observation", "value-quantity", "5.4||mg")
    assert isinstance(found, QuantityCondition)
    assert (found.prefix, found.system, found.code) == ("eq", None, "mg")
    assert found.low == pytest.approx(5.35)
    assert found.high == pytest.approx(5.45)
    found = only("Observation", "value-quantity", "5")
    assert isinstance(found, QuantityCondition)
    assert (found.low, found.high) == (4.5, math.nextafter(5.5, 0))  # [4.5, 5.5)


@pytest.mark.parametrize(
    ("name", "value"),
    [("value-quantity", "five"), ("value-quantity", "5|mg"), ("probability", "abc")],
)
def test_bad_numbers(name: str, value: str) -> None:
    type = "RiskAssessment" if name == "probability" else "Observation"
    with pytest.raises(BadRequest, match=name):
        parse(type, (name, value))


# -- uri, missing, _id, _lastUpdated ---------------------------------------------------


def test_uri_modifiers() -> None:
    url = "http://example.org/fhir/ValueSet"
    assert only("ValueSet", "url", url) == UriCondition("url", url, "eq")
    assert only("ValueSet", "url:below", url) == UriCondition("url", url, "below")
    assert only("ValueSet", "url:above", url + "/x") == UriCondition("url", url + "/x", "above")


def test_missing() -> None:
    assert only("Patient", "birthdate:missing", "true") == MissingCondition(
        "birthdate", "date", True
    )
    assert only("Observation", "subject:missing", "false") == MissingCondition(
        "subject", "reference", False
    )
    with pytest.raises(BadRequest, match="gender:missing"):
        parse("Patient", ("gender:missing", "maybe"))


def test_id_and_last_updated() -> None:
    assert only("Patient", "_id", "a,b") == IdCondition(("a", "b"))
    assert only("Patient", "_lastUpdated", "gt2020-01-01T10:00:00Z") == LastUpdatedCondition(
        "gt", "2020-01-01T10:00:00.000000Z", "2020-01-01T10:00:00.999999Z"
    )
    with pytest.raises(BadRequest, match="_lastUpdated"):
        parse("Patient", ("_lastUpdated", "yesterday"))


# -- combining -------------------------------------------------------------------------


def test_comma_is_or_and_repeats_are_and() -> None:
    parsed = parse("Patient", ("gender", "male,female"), ("name", "a"), ("name", "b"))
    assert parsed.query.clauses == (
        (TokenCondition("gender", None, "male"), TokenCondition("gender", None, "female")),
        (StringCondition("name", "a"),),
        (StringCondition("name", "b"),),
    )
    assert parsed.used == [("gender", "male,female"), ("name", "a"), ("name", "b")]


def test_empty_values_are_no_criteria() -> None:
    parsed = parse("Patient", ("name", ""), ("gender", " "))
    assert parsed.query.clauses == () and parsed.used == [] and parsed.ignored == []


def test_unknown_parameters_and_modifiers() -> None:
    with pytest.raises(BadRequest, match="nonsense"):
        parse("Patient", ("nonsense", "1"))
    with pytest.raises(BadRequest, match="phonetic"):
        parse("Patient", ("name:phonetic", "x"))
    lenient = parse(
        "Patient", ("nonsense", "1"), ("name:phonetic", "x"), ("gender", "male"), strict=False
    )
    assert lenient.ignored == ["nonsense", "name:phonetic"]
    assert lenient.used == [("gender", "male")]
    assert lenient.query.clauses == ((TokenCondition("gender", None, "male"),),)


def test_parameters_without_support_yet() -> None:
    for name, value in [
        ("_has:Observation:subject:nonsense", "x"),
        ("general-practitioner.nonsense", "x"),
        ("_text", "x"),
        ("_contained", "true"),
    ]:
        type = "Patient"
        with pytest.raises(BadRequest):
            parse(type, (name, value))
        assert parse(type, (name, value), strict=False).ignored == [name]


def test_system_and_multi_type_searches() -> None:
    assert only((), "_tag", "http://t|x") == TokenCondition("_tag", "http://t", "x")  # type: ignore[arg-type]
    assert parse((), ("name", "x"), strict=False).ignored == ["name"]
    both = parse(("Patient", "Practitioner"), ("name", "x"))
    assert both.query.types == ("Patient", "Practitioner")
    assert both.query.clauses == ((StringCondition("name", "x"),),)


# -- result parameters -----------------------------------------------------------------


def test_count_and_offset() -> None:
    assert parse("Patient").query.count == 20
    assert parse("Patient", ("_count", "5"), ("_offset", "10")).query.count == 5
    assert parse("Patient", ("_offset", "10")).query.offset == 10
    assert parse("Patient", ("_count", "0")).query.count == 0
    assert parse("Patient", ("_count", "5000")).query.count == 1000
    assert parse("Patient", ("_count", "50"), max_count=10).query.count == 10
    for bad in (("_count", "-1"), ("_count", "ten"), ("_offset", "-3")):
        with pytest.raises(BadRequest, match=bad[0]):
            parse("Patient", bad, strict=False)


def test_sort() -> None:
    parsed = parse("Patient", ("_sort", "-_lastUpdated,_id"))
    assert parsed.query.sort == (SortKey("_lastUpdated", True), SortKey("_id"))
    assert parsed.used == [("_sort", "-_lastUpdated,_id")]
    assert parse("Patient", ("_sort", "-birthdate,name")).query.sort == (
        SortKey("birthdate", True, "date"),
        SortKey("name", False, "string"),
    )
    with pytest.raises(BadRequest, match="nosuch"):
        parse("Patient", ("_sort", "nosuch"))
    lenient = parse("Patient", ("_sort", "nosuch,-_id"), strict=False)
    assert lenient.query.sort == (SortKey("_id", True),)
    assert lenient.ignored == ["_sort=nosuch"]


def test_total_summary_elements_and_format() -> None:
    parsed = parse(
        "Patient",
        ("_total", "none"),
        ("_elements", "id, name"),
        ("_format", "json"),
        ("_pretty", "true"),
    )
    assert parsed.query.total == "none"
    assert parsed.elements == ("id", "name")
    assert parsed.used == [("_total", "none"), ("_elements", "id,name")]
    assert parsed.ignored == []
    counted = parse("Patient", ("_summary", "count"), ("_total", "none"))
    assert counted.summary == "count"
    assert counted.query.count == 0 and counted.query.total == "accurate"
    assert parse("Patient", ("_summary", "true")).summary == "true"
    for bad in (("_total", "all"), ("_summary", "short")):
        with pytest.raises(BadRequest, match=bad[0]):
            parse("Patient", bad, strict=False)


def test_include_lists_start_empty() -> None:
    parsed = parse("Patient")
    assert parsed.includes == ()
    assert parsed.query.clauses == () and parsed.query.types == ("Patient",)
