"""FHIR XML <-> FHIR JSON, element by element, as https://hl7.org/fhir/R4/xml.html defines.

`json_to_xml(resource)` renders stored JSON as XML; `xml_to_json(body)` turns an XML body into
plain FHIR JSON (JSON names such as `resourceType` and `class`, `_x` partners for primitive
extensions) and validates it with `validate_resource`. The element names, their order, which
elements repeat and the JSON type of each primitive come from the R4B models' metadata
(`validate.elements`); lxml does the XML.

Why not the models' `model_dump_xml` / `model_validate_xml` (fhir_core.xml_utils): they
round-trip through pydantic and lose what we must keep. Measured with fhir.resources 8.3.0:
instants and dateTimes are re-formatted (`2020-01-01T00:00:00Z` comes back as
`2020-01-01T00:00:00+00:00`, `.123` as `.123000`), decimals go through float, a pretty-printed
narrative `div` comes back with the XML whitespace after `</div>` inside the JSON string,
an unknown element or a child without a default namespace raises KeyError, comments leak
into JSON as `fhir_comments`, it parses with lxml's default parser, and the 18 R4 types
without an R4B model cannot be written at all.

Rules kept here: the root and every FHIR element are in the `http://hl7.org/fhir` namespace;
primitives carry `value`, and `id` plus `<extension>` children for their `_x` partner;
Element.id and Extension.url are attributes; a resource inside a resource is wrapped in its
element (`<contained><Organization>`); the narrative `div` is XHTML in the XHTML namespace
(added when stored JSON lacks it). Parsing resolves no entities, loads no DTD and no network
resource, rejects any DOCTYPE, and drops comments and processing instructions.

The R4 types without an R4B model (`validate.STRUCTURE_ONLY_TYPES`) are read and written from
their R4 StructureDefinitions' elements (`validate.structure_for`). Limits: XML element order is
not enforced on input; decimals keep their value and
trailing zeros ("1.50" stays 1.50: decimals are read as `fhirjson.Decimal`).
"""

from __future__ import annotations

import copy
import math
import re
from functools import cache
from itertools import zip_longest
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from lxml import etree

from fhir_server.errors import BadRequest, InvalidResource, Issue
from fhir_server.model.fhirjson import Decimal
from fhir_server.model.validate import (
    COMPLEX,
    PRIMITIVE,
    RESOURCE,
    Element,
    elements,
    is_resource_type,
    structure_for,
    validate_resource,
)

__all__ = ["FHIR_NS", "json_to_xml", "xml_to_json"]

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_F = f"{{{FHIR_NS}}}"
_DIV = f"{{{XHTML_NS}}}div"
_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)
_XML_SPACE = " \t\r\n"  # XML's whitespace; str.strip() would also take U+00A0 as one
_LAST = 1 << 30  # sort key of JSON names a model does not know (structure-only types)


# -- JSON -> XML ----------------------------------------------------------------------------


def json_to_xml(resource: dict[str, Any], pretty: bool = False) -> bytes:
    """The XML form of a FHIR resource given as JSON (UTF-8, with an XML declaration)."""
    root = etree.Element(_F + resource["resourceType"], nsmap={None: FHIR_NS})
    narratives: list[tuple[etree._Element, str]] = []
    _write_resource(root, resource, narratives)
    if pretty:
        etree.indent(root, space="  ")
    for placeholder, div in narratives:  # after indenting, so the XHTML keeps its whitespace
        element = _xhtml(div)
        element.tail = placeholder.tail
        parent = placeholder.getparent()
        assert parent is not None  # a placeholder is always some element's child
        parent.replace(placeholder, element)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _write_resource(
    element: etree._Element, resource: dict[str, Any], narratives: list[tuple[etree._Element, str]]
) -> None:
    model = structure_for(resource.get("resourceType", ""))
    _write_object(
        element, resource, elements(model) if model else _base_fields(), True, False, narratives
    )


@cache
def _base_fields() -> dict[str, Element]:
    return elements(get_fhir_model_class("DomainResource"))


_ORDERS: dict[int, dict[str, int]] = {}  # id(elements(model)) -> JSON name -> position


def _sorted_keys(data: dict[str, Any], fields: dict[str, Element] | None) -> list[str]:
    if not fields:
        return list(data)
    order = _ORDERS.get(id(fields))
    if order is None:
        order = _ORDERS[id(fields)] = {name: i for i, name in enumerate(fields)}
    return sorted(data, key=lambda k: order.get(k.lstrip("_"), _LAST))


def _write_object(
    element: etree._Element,
    data: dict[str, Any],
    fields: dict[str, Element] | None,
    is_resource: bool,
    is_extension: bool,
    narratives: list[tuple[etree._Element, str]],
) -> None:
    for key in _sorted_keys(data, fields):
        if key == "resourceType" and is_resource:
            continue
        value = data[key]
        if not is_resource and (key == "id" or (key == "url" and is_extension)):
            element.set(key, _text(value))
            continue
        if key.startswith("_"):
            if key[1:] in data:
                continue  # written with its value
            name, value, ext = key[1:], None, value
        else:
            name, ext = key, data.get("_" + key)
        info = fields.get(name) if fields else None
        if isinstance(value, list) or isinstance(ext, list):
            values = value if isinstance(value, list) else []
            exts = ext if isinstance(ext, list) else []
            for v, e in zip_longest(values, exts):
                _write_property(element, name, v, e, info, narratives)
        else:
            _write_property(element, name, value, ext, info, narratives)


def _write_property(
    parent: etree._Element,
    name: str,
    value: Any,
    ext: Any,
    info: Element | None,
    narratives: list[tuple[etree._Element, str]],
) -> None:
    if value is None and not ext:
        return
    if isinstance(value, dict):
        child = etree.SubElement(parent, _F + name)
        if "resourceType" in value and (info is None or info.kind == RESOURCE):
            inner = etree.SubElement(child, _F + value["resourceType"])
            _write_resource(inner, value, narratives)
        else:
            fields = elements(info.model) if info is not None and info.model else None
            _write_object(
                child, value, fields, False, name in ("extension", "modifierExtension"), narratives
            )
        return
    if name == "div" and isinstance(value, str) and (info is None or info.type == "xhtml"):
        narratives.append((etree.SubElement(parent, _F + "div"), value))
        return
    child = etree.SubElement(parent, _F + name)
    if isinstance(ext, dict) and "id" in ext:
        child.set("id", _text(ext["id"]))
    if value is not None:
        child.set("value", _text(value))
    if isinstance(ext, dict):
        for extension in ext.get("extension") or []:
            _write_property(child, "extension", extension, None, _EXTENSION_INFO, narratives)


_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value)  # a fhirjson.Decimal's repr is its text as written
    # JSON strings may hold control characters that XML 1.0 cannot carry at all
    return _NOT_XML.sub("\ufffd", str(value))


def _xhtml(div: str) -> etree._Element:
    try:
        element = etree.fromstring(div, _PARSER)
        if element.tag == "div":  # stored without its namespace: put it there
            element = etree.fromstring(div.replace("<div", f'<div xmlns="{XHTML_NS}"', 1), _PARSER)
        if element.tag == _DIV:
            return element
    except (etree.XMLSyntaxError, ValueError):
        pass
    fallback = etree.Element(_DIV, nsmap={None: XHTML_NS})
    fallback.text = div
    return fallback


_EXTENSION_INFO = Element(
    "extension", COMPLEX, True, "Extension", get_fhir_model_class("Extension")
)


# -- XML -> JSON ----------------------------------------------------------------------------


def xml_to_json(body: bytes) -> dict[str, Any]:
    """The FHIR JSON of an XML resource body; 400 if it is not XML, else as validation says."""
    if not body or not body.strip():
        raise BadRequest("The XML body is empty")
    try:
        root = etree.fromstring(body, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as error:
        raise BadRequest(f"The body is not well-formed XML: {error}") from None
    if root.getroottree().docinfo.doctype:
        raise BadRequest("DOCTYPE declarations are not allowed in FHIR XML")
    if etree.QName(root).namespace != FHIR_NS:
        raise BadRequest(f"The root element must be in the FHIR namespace {FHIR_NS}")
    return validate_resource(_read_resource(root, None), deep=False)


def _invalid(path: str, message: str, code: str = "structure") -> InvalidResource:
    return InvalidResource(
        f"{path}: {message}", issues=[Issue(f"{path}: {message}", code, "error", (path,))]
    )


def _read_resource(element: etree._Element, path: str | None) -> dict[str, Any]:
    qname = etree.QName(element)
    rtype = qname.localname
    path = path or rtype
    if qname.namespace != FHIR_NS:
        raise _invalid(path, f"A resource element must be in the {FHIR_NS} namespace")
    if not is_resource_type(rtype):
        raise _invalid(path, f"'{rtype}' is not a FHIR R4 resource type", "not-supported")
    model = structure_for(rtype)
    _check_attributes(element, (), path)
    out: dict[str, Any] = {"resourceType": rtype}
    _read_children(element, elements(model), out, path)
    return out


def _check_attributes(element: etree._Element, allowed: tuple[str, ...], path: str) -> None:
    for name in element.attrib:
        if name not in allowed and not name.startswith("{"):  # namespaced ones (xsi:) pass
            raise _invalid(path, f"Unexpected attribute '{name}'")


def _read_children(
    element: etree._Element, fields: dict[str, Element], out: dict[str, Any], path: str
) -> None:
    if element.text and element.text.strip(_XML_SPACE):
        raise _invalid(path, "Text content is not allowed here; use value attributes")
    repeated: dict[str, tuple[list[Any], list[Any]]] = {}
    for child in element:
        if child.tail and child.tail.strip(_XML_SPACE):
            raise _invalid(path, "Text content is not allowed here; use value attributes")
        qname = etree.QName(child)
        name = qname.localname
        info = fields.get(name)
        here = f"{path}.{info.fhirpath if info is not None else name}"
        if info is not None and info.many:
            here += f"[{len(repeated[name][0]) if name in repeated else 0}]"
        if info is not None and info.type == "xhtml" and child.tag != _DIV:
            raise _invalid(here, f"The narrative div must be in the {XHTML_NS} namespace")
        if (
            info is None
            or name.startswith("_")
            or not (qname.namespace == FHIR_NS or child.tag == _DIV)
        ):
            shown = name if qname.namespace == FHIR_NS else str(child.tag)
            raise _invalid(here, f"Unknown element '{shown}'")
        if info.kind == PRIMITIVE:
            value, ext = _read_primitive(child, info, here)
        elif info.kind == RESOURCE:
            value, ext = _read_contained(child, here), None
        else:
            value, ext = _read_complex(child, info, here), None
        if info.many:
            if name not in repeated:  # keys go in at first sight, to keep the document order
                repeated[name] = out[name], out["_" + name] = [], []
            values, exts = repeated[name]
            values.append(value)
            exts.append(ext)
        elif name in out or "_" + name in out:
            raise _invalid(here, "This element does not repeat")
        else:
            if value is not None:
                out[name] = value
            if ext is not None:
                out["_" + name] = ext
    for name, (values, exts) in repeated.items():
        if all(v is None for v in values):
            del out[name]
        if all(e is None for e in exts):
            del out["_" + name]


def _read_primitive(
    child: etree._Element, info: Element, path: str
) -> tuple[Any, dict[str, Any] | None]:
    if info.type == "xhtml":
        div = copy.deepcopy(child)  # a copy drops the namespaces declared further up ...
        etree.cleanup_namespaces(div)  # ... and this the ones it does not use (xsi:)
        return etree.tostring(div, encoding="unicode", with_tail=False), None
    _check_attributes(child, ("value", "id"), path)
    ext: dict[str, Any] = {}
    if "id" in child.attrib:
        ext["id"] = child.get("id")
    extensions = [
        _read_complex(c, _EXTENSION_INFO, f"{path}.extension")
        for c in child
        if _is_extension(c, path)
    ]
    if extensions:
        ext["extension"] = extensions
    raw = child.get("value")
    if raw is None:
        if not ext:
            raise _invalid(path, "A primitive element needs a value attribute or extensions")
        return None, ext
    if child.text and child.text.strip(_XML_SPACE):
        raise _invalid(path, "Text content is not allowed here; use the value attribute")
    return _json_value(raw, info.type, path), ext or None


def _is_extension(child: etree._Element, path: str) -> bool:
    if child.tag != _F + "extension":
        raise _invalid(path, f"A primitive element may only contain extensions, not {child.tag!s}")
    return True


_INTEGER = re.compile(r"0|[-+]?[1-9][0-9]*")
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _json_value(raw: str, type_code: str, path: str) -> Any:
    """The JSON value of a primitive's `value` attribute (R4 datatypes regexes)."""
    if type_code == "boolean" and raw in ("true", "false"):
        return raw == "true"
    if type_code in ("integer", "unsignedInt", "positiveInt", "integer64"):
        if _INTEGER.fullmatch(raw):
            return int(raw)
    elif type_code == "decimal":
        if _DECIMAL.fullmatch(raw) and math.isfinite(float(raw)):
            return Decimal(raw) if any(c in raw for c in ".eE") else int(raw)
    elif type_code != "boolean":
        return raw
    raise _invalid(path, f"{raw[:60]!r} is not a valid {type_code}", "value")


def _read_complex(child: etree._Element, info: Element, path: str) -> dict[str, Any]:
    is_extension = info.type == "Extension"
    _check_attributes(child, ("id", "url") if is_extension else ("id",), path)
    out: dict[str, Any] = {}
    for attribute in ("id", "url"):
        if attribute in child.attrib:
            out[attribute] = child.get(attribute)
    _read_children(child, elements(info.model), out, path)
    return out


def _read_contained(child: etree._Element, path: str) -> dict[str, Any]:
    _check_attributes(child, (), path)
    inner = list(child)
    if len(inner) != 1 or (child.text and child.text.strip(_XML_SPACE)):
        raise _invalid(path, "This element must hold exactly one resource")
    return _read_resource(inner[0], path)
