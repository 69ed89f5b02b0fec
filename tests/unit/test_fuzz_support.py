"""The fuzz test's own generator: it must cope with the documents it makes."""

from __future__ import annotations

from typing import Any

from tests.support.fuzz import Pairs, _has_pairs


def test_a_document_nested_past_the_recursion_limit_is_searched_for_pairs() -> None:
    """Four "nest" mutations of a Bundle went past Python's recursion limit in `_has_pairs`
    (RecursionError in the test process, reported by Hypothesis as a flaky failure)."""
    document: Any = {"resourceType": "Bundle"}
    for _ in range(5_000):
        document = {"x": [document]}
    assert _has_pairs(document) is False
    document = {"y": [document, {"z": Pairs((("a", 1), ("a", 2)))}]}
    assert _has_pairs(document) is True
