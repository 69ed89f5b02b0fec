"""FHIR JSON decimals keep their text; everything else goes the fast (orjson) way."""

from __future__ import annotations

import pytest

from fhir_server.model import fhirjson
from fhir_server.model.fhirjson import _LOSSY, Decimal


@pytest.mark.parametrize(
    "text",
    [
        b'{"value":1.50}',
        b'{"a":[1, 2.0]}',
        b'{"v": -3.10 ,"w":1}',
        b'{"v":1e2}',
        b'{"v":1.5E-7}',
        b'{"v":12345678901234567}',
        b'{"v":0.1234567890123456}',
    ],
)
def test_numbers_a_float_would_change_keep_their_text(text: bytes) -> None:
    assert _LOSSY.search(text)
    assert fhirjson.dumps(fhirjson.loads(text)).replace(b" ", b"") == text.replace(b" ", b"")


@pytest.mark.parametrize(
    "text",
    [
        b'{"meta":{"lastUpdated":"2026-01-01T10:00:00.123450Z"},"v":1.5}',
        b'{"effectiveDateTime":"2024-03-05T10:00:00.000000+00:00","n":[1,2]}',
        b'{"text":"version 2.0 of 10.0"}',
    ],
)
def test_times_and_text_that_look_like_decimals_take_the_fast_path(text: bytes) -> None:
    assert not _LOSSY.search(text)
    parsed = fhirjson.loads(text)
    assert not any(isinstance(v, Decimal) for v in parsed.values())
