"""The `_filter` grammar (https://hl7.org/fhir/R4/search_filter.html) and its errors."""

from __future__ import annotations

import pytest

from fhir_server.errors import BadRequest
from fhir_server.search.filter import Comparison, Logical, Negation, parse_filter, tokenize


def test_tokens_keep_quoted_strings_and_split_parentheses() -> None:
    assert tokenize('not(name eq "a b \\"c\\"")') == [
        "not",
        "(",
        "name",
        "eq",
        '"a b \\"c\\""',
        ")",
    ]


def test_comparison_and_quoted_value() -> None:
    assert parse_filter('name eq "van der Berg"') == Comparison("name", "eq", "van der Berg")
    assert parse_filter("code eq http://loinc.org|1234-5") == Comparison(
        "code", "eq", "http://loinc.org|1234-5"
    )


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    a, b, c = (Comparison(n, "eq", "1") for n in ("a", "b", "c"))
    assert parse_filter("a eq 1 or b eq 1 and c eq 1") == Logical("or", (a, Logical("and", (b, c))))
    assert parse_filter("(a eq 1 or b eq 1) and c eq 1") == Logical(
        "and", (Logical("or", (a, b)), c)
    )
    assert parse_filter("not (a eq 1) and b eq 1") == Logical("and", (Negation(a), b))
    assert parse_filter("a eq 1 and b eq 1 and c eq 1") == Logical("and", (a, b, c))


def test_chained_paths_are_kept_whole() -> None:
    assert parse_filter("subject.name sw pet") == Comparison("subject.name", "sw", "pet")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("name", "ends too early"),
        ("name eq", "ends too early"),
        ("name is x", "unknown operator 'is'"),
        ("(name eq x", "ends too early"),
        ("name eq x)", r"unexpected '\)'"),
        ("name eq x and", "ends too early"),
        ("not name eq x", r"expected '\('"),
        ('"name" eq x', "expected a parameter name"),
        ("name eq (", "expected a value"),
        ('name eq "unterminated', "bad string|cannot read"),
        ("name[use eq x].family eq y", "filters inside a path"),
    ],
)
def test_malformed_filters_are_bad_requests_naming_filter(text: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as raised:
        parse_filter(text)
    assert raised.value.issues[0].expression == ("_filter",)
