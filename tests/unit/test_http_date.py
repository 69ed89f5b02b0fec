"""`http_date` writes what the standard library's RFC 9110 formatter writes."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from fhir_server.interactions.common import http_date


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)))
def test_http_date_is_the_imf_fixdate_of_the_instant(moment: datetime) -> None:
    instant = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S.%f}Z"
    assert http_date(instant) == format_datetime(moment.replace(tzinfo=UTC), usegmt=True)
