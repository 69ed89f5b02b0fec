"""Content negotiation: which format a client sends and wants (JSON or XML).

https://hl7.org/fhir/R4/http.html#mime-type -- `application/fhir+json` and
`application/fhir+xml`; `_format` overrides Accept; `_pretty` asks for indentation.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from fhir_server.errors import BadRequest, NotAcceptable, UnsupportedMediaType
from fhir_server.model import fhirjson
from fhir_server.model.xml import json_to_xml, xml_to_json

Format = Literal["json", "xml"]

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "json")
XML_TYPES = ("application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml", "xml")
PATCH_TYPE = "application/json-patch+json"
FORM_TYPE = "application/x-www-form-urlencoded"
MEDIA = {
    "json": "application/fhir+json; charset=utf-8",
    "xml": "application/fhir+xml; charset=utf-8",
}


def response_format(accept: str | None, format_param: str | None) -> Format:
    """The format to answer in: `_format` first, then Accept, JSON by default."""
    if format_param:
        return _named(format_param, strict=True) or "json"
    if not accept:
        return "json"
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("*/*", "application/*", "text/*"):
            return "json" if media != "text/*" else "xml"
        found = _named(media, strict=False)
        if found:
            return found
    raise NotAcceptable(f"Cannot answer in '{accept}'; use application/fhir+json or +xml")


def _named(media: str, *, strict: bool) -> Format | None:
    media = media.split(";")[0].strip().lower()
    if media in JSON_TYPES or media.endswith(("+json", "ndjson")):  # ndjson: bulk export files
        return "json"
    if media in XML_TYPES or media.endswith("+xml"):
        return "xml"
    if media in ("html", "text/html"):
        return "json"
    if strict:
        raise NotAcceptable(f"_format={media} is not supported; use json or xml")
    return None


def parse_body(content_type: str | None, raw: bytes) -> Any:
    """The request body as JSON data (a dict, or a list for JSON Patch); 400/415 otherwise."""
    media = (content_type or "").split(";")[0].strip().lower()
    if "patch" in media and media != PATCH_TYPE:  # XML Patch, JSON Merge Patch
        raise UnsupportedMediaType(
            f"'{media}' is not a supported patch format; use "
            f"{PATCH_TYPE} or a FHIRPath Patch Parameters resource"
        )
    if media == PATCH_TYPE or media in JSON_TYPES or media.endswith("+json"):
        return _json(raw)
    if media in XML_TYPES or media.endswith("+xml"):
        return xml_to_json(raw)
    if not media:
        raise UnsupportedMediaType("A request body needs a Content-Type (application/fhir+json)")
    raise UnsupportedMediaType(
        f"Content-Type '{media}' is not supported; "
        "use application/fhir+json or application/fhir+xml"
    )


def _json(raw: bytes) -> Any:
    try:
        return fhirjson.loads_body(raw)
    except ValueError as error:
        raise BadRequest(f"The body is not valid JSON: {error}") from None


def render(body: bytes | dict[str, Any], fmt: Format, pretty: bool) -> bytes:
    """Response bytes: stored JSON as it is when possible, else serialized as asked."""
    if fmt == "xml":
        resource = fhirjson.loads(body) if isinstance(body, bytes) else body
        return json_to_xml(resource, pretty=pretty)
    if pretty:
        resource = fhirjson.loads(body) if isinstance(body, bytes) else body
        return fhirjson.dumps(resource, option=orjson.OPT_INDENT_2)
    return body if isinstance(body, bytes) else fhirjson.dumps(body)
