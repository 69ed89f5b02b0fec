"""The parameters every layer reads the same way: HTTP-only names, non-negative integers
and paging tokens, and that search, operations and conditional writes share them."""

from __future__ import annotations

import base64

import pytest

from fhir_server.errors import BadRequest
from fhir_server.interactions.common import query_criteria
from fhir_server.interactions.operations import Params
from fhir_server.interactions.request import Request
from fhir_server.parameters import HTTP_ONLY, decode_token, encode_token, non_negative
from fhir_server.search.parse import NOT_SEARCH, parse_search, sort_signature
from fhir_server.search.registry import load_registry

QUERY = (("_format", "xml"), ("_pretty", "true"), ("name", "x"))


def test_http_only_parameters_reach_no_interaction() -> None:
    assert {"_format", "_pretty"} == HTTP_ONLY and HTTP_ONLY <= NOT_SEARCH
    assert Params.from_query(QUERY).names() == {"name"}
    assert query_criteria(Request("DELETE", "Patient", QUERY)) == [("name", "x")]


@pytest.mark.parametrize("value", ["0", "7", 12])
def test_non_negative_accepts(value: object) -> None:
    assert non_negative("_count", value) == int(str(value))


@pytest.mark.parametrize("value", ["-1", "two", "1.5", "", "²", "9223372036854775808"])
def test_non_negative_names_the_parameter(value: str) -> None:
    with pytest.raises(BadRequest, match="count must be a whole number from 0") as raised:
        non_negative("count", value)
    assert raised.value.outcome()["issue"][0]["expression"] == ["count"]


def test_tokens_round_trip_and_stay_url_safe() -> None:
    data = {"a": "Patient/p1", "k": [None, "x", 3, 1.5], "p": "é?&="}
    token = encode_token(data)
    assert decode_token(token) == data
    assert "=" not in token and "+" not in token and "/" not in token


@pytest.mark.parametrize(
    "token",
    [
        "!!",
        "",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b"not json").decode(),
    ],
)
def test_a_foreign_token_is_a_400_naming_the_parameter(token: str) -> None:
    with pytest.raises(BadRequest, match="_page is not a paging token") as raised:
        decode_token(token)
    assert raised.value.outcome()["issue"][0]["expression"] == ["_page"]


def test_search_reads_the_tokens_it_writes() -> None:
    registry = load_registry()
    first = parse_search(registry, ("Patient",), [("_sort", "-birthdate")], strict=True)
    token = encode_token({"s": sort_signature(first.query.sort), "b": False, "k": ["x", 4]})
    parsed = parse_search(
        registry, ("Patient",), [("_sort", "-birthdate"), ("_page", token)], strict=True
    )
    assert parsed.query.page is not None and parsed.query.page.key == ("x", 4)
    bad = encode_token({"s": "-birthdate", "b": False, "k": {"x": 4}})
    with pytest.raises(BadRequest, match="_page"):
        parse_search(registry, ("Patient",), [("_sort", "-birthdate"), ("_page", bad)], strict=True)
