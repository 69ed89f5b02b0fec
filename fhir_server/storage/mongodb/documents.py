"""Document shape: the `_id` keys, the record fields, and the index arrays built from a
resource's index values (see the package docstring for the collections and fields)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_server.search.values import (
    COMPONENT_FIELDS,
    CompositeValue,
    DateValue,
    GeoValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    component_fields,
)
from fhir_server.storage.base import StoredResource

Filter = dict[str, Any]

RECORD_FIELDS = dict.fromkeys(
    ("type", "id", "version", "last_updated", "deleted", "method", "data", "chunks"), 1
)


def resource_key(type: str, id: str) -> str:
    return f"{type}/{id}"


def one(type: str, id: str, version: int | None = None) -> Filter:
    """The filter for one resource (or one version), with type and id spelled out so a
    collection sharded on {type, id} routes it to one shard."""
    key = resource_key(type, id) if version is None else f"{resource_key(type, id)}/{version}"
    return {"_id": key, "type": type, "id": id}


def record(doc: dict[str, Any], data: bytes | None = None) -> StoredResource:
    """The version in `doc`; `data`: its bytes when they were stored in chunks."""
    return StoredResource(
        doc["type"],
        doc["id"],
        doc["version"],
        doc["last_updated"],
        doc["deleted"],
        bytes(doc["data"]) if data is None else data,
        doc["method"],
    )


def version_fields(rec: StoredResource) -> dict[str, Any]:
    return {
        "type": rec.type,
        "id": rec.id,
        "version": rec.version,
        "last_updated": rec.last_updated,
        "deleted": rec.deleted,
        "method": rec.method,
        "data": rec.data,
    }


def present(**fields: Any) -> dict[str, Any]:
    """The fields that are not None (a missing key matches `{key: null}` in queries)."""
    return {k: v for k, v in fields.items() if v is not None}


def _index_element(value: IndexValue) -> tuple[str, dict[str, Any]]:
    """The index array a value goes to and its element there."""
    match value:
        case TokenValue():
            return "tok", present(p=value.param, s=value.system, c=value.code, t=value.text)
        case StringValue():
            return "str", {"p": value.param, "v": value.value, "x": value.exact}
        case ReferenceValue():
            return "ref", present(
                p=value.param, t=value.target_type, i=value.target_id, u=value.url, v=value.version
            )
        case DateValue():
            return "dt", {"p": value.param, "lo": value.low, "hi": value.high}
        case NumberValue():
            return "num", {"p": value.param, "lo": value.low, "hi": value.high}
        case QuantityValue():
            return "qty", present(
                p=value.param,
                lo=value.low,
                hi=value.high,
                s=value.system,
                c=value.code,
                u=value.unit,
            )
        case UriValue():
            return "uri", {"p": value.param, "u": value.uri}
        case CompositeValue():
            return "cmp", {"p": value.param, **composite_fields(value)}
        case GeoValue():
            return "geo", {"p": value.param, "lat": value.latitude, "lon": value.longitude}
    raise TypeError(f"Not an index value: {value!r}")


def composite_fields(value: CompositeValue) -> dict[str, Any]:
    """The components flattened as s0, c0, lo0, hi0, x0, s1, ... (None left out)."""
    return present(
        **{
            f"{name}{i}": field
            for i, part in enumerate(value.parts)
            for name, field in zip(COMPONENT_FIELDS, component_fields(part), strict=True)
        }
    )


_INDEX_FIELDS = ("tok", "str", "ref", "dt", "num", "qty", "uri", "cmp", "geo")
FIELD_OF_KIND = {
    "token": "tok",
    "string": "str",
    "reference": "ref",
    "date": "dt",
    "number": "num",
    "quantity": "qty",
    "uri": "uri",
    "composite": "cmp",
    "special": "geo",
}


def index_fields(index: Iterable[IndexValue]) -> dict[str, Any]:
    """Every index array, empty ones included, so an update replaces them all, and the
    per-parameter sort values `sk` (see `ordering`)."""
    from fhir_server.storage.mongodb.ordering import sort_fields

    values = list(dict.fromkeys(index))  # drop exact duplicates
    fields: dict[str, Any] = {name: [] for name in _INDEX_FIELDS}
    for value in values:
        name, element = _index_element(value)
        fields[name].append(element)
    fields["sk"] = sort_fields(values)
    return fields
