"""Special search parameters: Location `near` (the only one R4 defines with an expression).

https://hl7.org/fhir/R4/location.html#positional -- `near=[latitude]|[longitude]|
[distance]|[units]` finds locations whose position lies within the distance of the point.
"If the units are omitted, then kms should be assumed. If the distance is omitted, then
the server can use its own discretion": here `DEFAULT_DISTANCE_KM`. Units are UCUM
(`km`, `m`, `[mi_i]`, `[nmi_i]`; `mi` is accepted too). Distances are great-circle
distances on a sphere of the mean Earth radius (haversine), `distance` inclusive.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, TypeGuard

from fhir_server.search.conditions import NearCondition
from fhir_server.search.registry import SearchParam
from fhir_server.search.types.common import ParseContext, bad_value, split_escaped, unescape
from fhir_server.search.values import GeoValue

MODIFIERS: frozenset[str] = frozenset()
DEFAULT_DISTANCE_KM = 5.0
EARTH_RADIUS_KM = 6371.0088  # the IUGG mean radius
_KM_PER_UNIT = {
    "km": 1.0,
    "m": 0.001,
    "[mi_i]": 1.609344,
    "mi": 1.609344,
    "[mi_us]": 1.609347219,
    "[nmi_i]": 1.852,
}
_FORMAT = "near value (latitude|longitude|distance|units)"


def extract(code: str, fhir_type: str | None, data: Any) -> Iterator[GeoValue]:
    if isinstance(data, dict):
        lat, lon = data.get("latitude"), data.get("longitude")
        if _number(lat) and _number(lon) and -90 <= lat <= 90 and -180 <= lon <= 180:
            yield GeoValue(code, float(lat), float(lon))


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse(param: SearchParam, modifier: str | None, value: str, ctx: ParseContext) -> NearCondition:
    parts = [unescape(p).strip() for p in split_escaped(value, "|")]
    if len(parts) < 2 or len(parts) > 4:
        raise bad_value(param.code, value, _FORMAT)
    try:
        lat, lon = float(parts[0]), float(parts[1])
        distance = float(parts[2]) if len(parts) > 2 and parts[2] else DEFAULT_DISTANCE_KM
    except ValueError:
        raise bad_value(param.code, value, _FORMAT) from None
    unit = parts[3] if len(parts) > 3 and parts[3] else "km"
    factor = _KM_PER_UNIT.get(unit)
    if (
        factor is None
        or not (-90 <= lat <= 90 and -180 <= lon <= 180)
        or not distance >= 0
        or not math.isfinite(distance)
    ):
        raise bad_value(param.code, value, _FORMAT)
    return NearCondition(param.code, lat, lon, distance * factor)


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The haversine great-circle distance between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def bounding_box(c: NearCondition) -> tuple[float, float, list[tuple[float, float]]]:
    """(lat_low, lat_high, longitude ranges) holding every point within the distance.

    A box slightly larger than the circle (an index range); the exact test follows. Near a
    pole every longitude counts; across the antimeridian the longitudes split in two."""
    margin = 1.0 + 1e-9
    dlat = math.degrees(c.distance_km / EARTH_RADIUS_KM) * margin
    low, high = c.latitude - dlat, c.latitude + dlat
    if low <= -90 or high >= 90:
        return max(low, -90.0), min(high, 90.0), [(-180.0, 180.0)]
    dlon = dlat / math.cos(math.radians(max(abs(low), abs(high))))
    west, east = c.longitude - dlon, c.longitude + dlon
    if dlon >= 180:
        return low, high, [(-180.0, 180.0)]
    if west < -180:
        return low, high, [(west + 360, 180.0), (-180.0, east)]
    if east > 180:
        return low, high, [(west, 180.0), (-180.0, east - 360)]
    return low, high, [(west, east)]
