"""FHIR date, dateTime and instant values as UTC ranges at their precision.

https://hl7.org/fhir/R4/search.html#date -- "the date parameter format is
yyyy-mm-ddThh:mm:ss.ssss[Z|(+|-)hh:mm]" and a value stands for the whole period its
precision covers (2013-01 is all of January 2013). Ranges use the storage format
`YYYY-MM-DDTHH:MM:SS.ffffffZ`; values without an offset are read as UTC.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
EARLIEST = "0001-01-01T00:00:00.000000Z"
LATEST = "9999-12-31T23:59:59.999999Z"


def parse_instant_range(value: str) -> tuple[str, str] | None:
    """[low, high] in storage format for a FHIR date/dateTime/instant, None if malformed."""
    found = _DATE.match(value.strip())
    if not found:
        return None
    try:
        low, high = _bounds(found.groupdict())
    except (ValueError, OverflowError):
        return None
    return _fmt(low), _fmt(high)


def _bounds(g: dict[str, str | None]) -> tuple[datetime, datetime]:
    year = int(g["y"] or 0)
    if g["m"] is None:
        return datetime(year, 1, 1), datetime(year, 12, 31, 23, 59, 59, 999999)
    month = int(g["m"])
    if g["d"] is None:
        last = calendar.monthrange(year, month)[1]
        return datetime(year, month, 1), datetime(year, month, last, 23, 59, 59, 999999)
    day = datetime(year, month, int(g["d"]))
    if g["H"] is None:
        return day, day.replace(hour=23, minute=59, second=59, microsecond=999999)
    start = day.replace(hour=int(g["H"]), minute=int(g["M"] or 0))
    if g["S"] is None:
        end = start + timedelta(minutes=1) - timedelta(microseconds=1)
    else:
        start = start.replace(second=int(g["S"]))
        frac = g["f"]
        if frac:
            start = start.replace(microsecond=int(frac[:6].ljust(6, "0")))
            end = (
                start
                if len(frac) >= 6
                else start + timedelta(microseconds=10 ** (6 - len(frac)) - 1)
            )
        else:
            end = start + timedelta(seconds=1) - timedelta(microseconds=1)
    offset = _offset(g["tz"])
    return start - offset, end - offset


def _offset(tz: str | None) -> timedelta:
    if not tz or tz == "Z":
        return timedelta(0)
    sign = -1 if tz[0] == "-" else 1
    hours, minutes = int(tz[1:3]), int(tz[4:6])
    return sign * timedelta(hours=hours, minutes=minutes)


def _fmt(moment: datetime) -> str:
    return (
        moment.replace(tzinfo=UTC).strftime(FORMAT)
        if moment.year >= 1000
        else (f"{moment.year:04d}" + moment.strftime(FORMAT)[4:])
    )
