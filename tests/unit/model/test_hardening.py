"""What the server accepts as a resource: the cases where it was too strict or too lenient.

Each case is written from the R4 spec (json.html, xml.html, datatypes.html,
extensibility.html) or from a reader the stored JSON must not break (a strict JSON parser,
an XML writer); see fhir_server/model/validation/primitives.py and limits.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fhir_server.api.content import parse_body
from fhir_server.errors import BadRequest, InvalidResource, UnsupportedMediaType
from fhir_server.interactions.bundles import bundle
from fhir_server.model import fhirjson
from fhir_server.model.validate import STRUCTURE_ONLY_TYPES, validate_resource
from fhir_server.model.validation import limits
from fhir_server.model.xml import json_to_xml, xml_to_json

JSON = "application/fhir+json"
XML = "application/fhir+xml"


def issues_of(resource: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    with pytest.raises(InvalidResource) as caught:
        validate_resource(resource)
    return [(issue.code, issue.expression) for issue in caught.value.issues]


def code_system(*concepts: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "status": "draft",
        "content": "complete",
        "concept": list(concepts),
    }


# -- primitive extensions on Extension.value[x] (extensibility.html, json.html#primitive) ----

TRANSLATED = {
    "url": "http://hl7.org/fhir/StructureDefinition/codesystem-concept-comments",
    "valueString": "Commentaire",
    "_valueString": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/translation",
                "extension": [
                    {"url": "lang", "valueCode": "fr"},
                    {"url": "content", "valueString": "Comment"},
                ],
            }
        ]
    },
}
ONLY_EXTENDED = {
    "url": "http://example.org/status",
    "_valueCode": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "unknown",
            }
        ]
    },
}


@pytest.mark.parametrize("extension", [TRANSLATED, ONLY_EXTENDED], ids=["value", "no-value"])
def test_extension_values_may_carry_primitive_extensions(extension: dict[str, Any]) -> None:
    resource = code_system({"code": "a", "extension": [extension]})
    assert validate_resource(resource) is resource
    assert xml_to_json(json_to_xml(resource)) == resource


def test_an_extension_values_primitive_extension_is_itself_checked() -> None:
    broken = {
        "url": "http://example.org/x",
        "valueString": "a",
        "_valueString": {"extension": [{"url": "http://example.org/y"}]},
    }
    issues = issues_of(code_system({"code": "a", "extension": [broken]}))
    assert [code for code, _ in issues] == ["invariant"]  # ext-1 on the inner extension
    assert issues[0][1] == ("CodeSystem.concept[0].extension[0].valueString.extension[0]",)


def test_xml_extension_value_with_extensions_is_read() -> None:
    body = b"""<CodeSystem xmlns="http://hl7.org/fhir"><status value="draft"/>
      <content value="complete"/><concept><extension url="http://example.org/x">
      <valueCode value="a"><extension url="http://example.org/y"><valueBoolean value="true"/>
      </extension></valueCode></extension><code value="a"/></concept></CodeSystem>"""
    extension = xml_to_json(body)["concept"][0]["extension"][0]
    assert extension == {
        "url": "http://example.org/x",
        "valueCode": "a",
        "_valueCode": {"extension": [{"url": "http://example.org/y", "valueBoolean": True}]},
    }


# -- XML Schema whitespace in the R4 regexes (datatypes.html) ---------------------------------


@pytest.mark.parametrize("code", ["CHEST\u00a0", "\u00a0x", "a\u2003b", "a b", "a\tb"])
def test_codes_with_unicode_spaces_or_inner_xml_spaces_are_codes(code: str) -> None:
    resource = code_system({"code": code})
    assert validate_resource(resource) is resource
    assert xml_to_json(json_to_xml(resource)) == resource


@pytest.mark.parametrize("code", ["a ", " a", "a  b", "a\nb\n"])
def test_codes_with_leading_trailing_or_double_xml_spaces_are_not(code: str) -> None:
    assert issues_of(code_system({"code": code})) == [("value", ("CodeSystem.concept[0].code",))]


def test_uris_may_hold_a_no_break_space_but_base64_may_not() -> None:
    patient = {"resourceType": "Patient", "implicitRules": "urn:x:a\u00a0b"}
    assert validate_resource(patient) is patient
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": "YWJj\u00a0"}
    assert issues_of(binary) == [("value", ("Binary.data",))]
    spaced = {"resourceType": "Binary", "contentType": "text/plain", "data": "YW Jj\r\n"}
    assert validate_resource(spaced) is spaced


# -- what breaks readers: control characters, 1e400, duplicate keys ---------------------------


@pytest.mark.parametrize("text", ["a\x00b", "a\x1bb", "\x07", "a\ufffe", "a\ud800b"])
def test_characters_xml_cannot_carry_are_refused(text: str) -> None:
    issues = issues_of({"resourceType": "Patient", "name": [{"family": text}]})
    assert issues == [("value", ("Patient.name[0].family",))]


def test_tab_cr_lf_are_allowed_in_strings() -> None:
    patient = {"resourceType": "Patient", "name": [{"text": "a\tb\r\nc"}]}
    assert validate_resource(patient) is patient


def test_control_characters_in_xml_input_are_a_400() -> None:
    body = b'<Patient xmlns="http://hl7.org/fhir"><name><family value="a&#1;b"/></name></Patient>'
    with pytest.raises(BadRequest):
        parse_body(XML, body)


@pytest.mark.parametrize("number", [b"1e400", b"-1E+999", b"1.0e309"])
def test_numbers_beyond_a_double_are_refused(number: bytes) -> None:
    body = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
        b'"valueQuantity":{"value":' + number + b"}}"
    )
    with pytest.raises(BadRequest, match="out of range"):
        parse_body(JSON, body)


def test_an_infinite_decimal_reaching_the_validator_is_refused() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": float("inf")},
    }
    assert issues_of(observation) == [("value", ("Observation.value.ofType(Quantity).value",))]


@pytest.mark.parametrize(
    "body",
    [
        b'{"resourceType":"Patient","gender":"male","gender":"female"}',
        b'{"resourceType":"Patient","name":[{"family":"a","given":["b"],"family":"c"}]}',
        b'{"resourceType":"Patient","birthDate":"2000-01-01","x":1.50,"birthDate":"2001-01-01"}',
    ],
)
def test_duplicate_keys_are_refused(body: bytes) -> None:
    with pytest.raises(BadRequest, match="appears twice"):
        parse_body(JSON, body)


def test_a_lone_surrogate_escape_is_refused_and_a_pair_is_not() -> None:
    with pytest.raises(BadRequest, match="surrogate"):
        parse_body(JSON, b'{"resourceType":"Patient","name":[{"family":"a\\ud800"}]}')
    assert parse_body(JSON, b'{"n":"\\ud83d\\ude00"}') == {"n": "\U0001f600"}


# -- nesting: parse and walk (item: 10,000 deep with a decimal) -------------------------------


@pytest.mark.parametrize("leaf", [b"1.50", b"1"])
def test_json_nested_ten_thousand_deep_is_a_400(leaf: bytes) -> None:
    body = b'{"resourceType":"Basic","code":' + b"[" * 10_000 + leaf + b"]" * 10_000 + b"}"
    with pytest.raises(BadRequest):
        parse_body(JSON, body)


@pytest.fixture
def small_limits() -> Iterator[None]:
    before = (limits.LIMITS.max_string_chars, limits.LIMITS.max_depth)
    limits.configure(max_string_chars=10, max_depth=5)
    yield
    limits.configure(max_string_chars=before[0], max_depth=before[1])


def nested_questionnaire(levels: int) -> dict[str, Any]:
    item: dict[str, Any] = {"linkId": "0", "type": "group"}
    top = item
    for level in range(1, levels):
        child = {"linkId": str(level), "type": "group"}
        item["item"] = [child]
        item = child
    return {"resourceType": "Questionnaire", "status": "draft", "item": [top]}


def test_objects_nested_beyond_the_limit_are_refused(small_limits: None) -> None:
    assert validate_resource(nested_questionnaire(4))  # the resource object + 4 items
    issues = issues_of(nested_questionnaire(5))
    assert [code for code, _ in issues] == ["too-long"]
    assert issues[0][1] == ("Questionnaire.item[0].item[0].item[0].item[0].item[0]",)


def test_the_default_depth_limit() -> None:
    assert validate_resource(nested_questionnaire(limits.DEFAULT_MAX_DEPTH - 1))
    assert [c for c, _ in issues_of(nested_questionnaire(limits.DEFAULT_MAX_DEPTH))] == ["too-long"]


# -- string length (datatypes.html#string: "strings SHALL NOT exceed 1MB") --------------------


def test_strings_longer_than_the_limit_are_refused(small_limits: None) -> None:
    assert validate_resource({"resourceType": "Patient", "name": [{"family": "x" * 10}]})
    issues = issues_of({"resourceType": "Patient", "name": [{"family": "x" * 11}]})
    assert issues == [("value", ("Patient.name[0].family",))]
    assert issues_of({"resourceType": "Patient", "gender": "x" * 11}) == [
        ("value", ("Patient.gender",))
    ]


def test_base64_and_narrative_are_bounded_by_the_body_limit_only(small_limits: None) -> None:
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": "YWJj" * 10}
    assert validate_resource(binary) is binary
    text = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">' + "x" * 20 + "</div>",
    }
    patient = {"resourceType": "Patient", "text": text}
    assert validate_resource(patient) is patient


def test_the_default_string_limit_is_one_mebibyte() -> None:
    family = "x" * (1024 * 1024)
    assert validate_resource({"resourceType": "Patient", "name": [{"family": family}]})
    issues = issues_of({"resourceType": "Patient", "name": [{"family": family + "x"}]})
    assert issues == [("value", ("Patient.name[0].family",))]


# -- media types and empty Bundles ------------------------------------------------------------


@pytest.mark.parametrize(
    "media",
    ["application/xml-patch+xml", "application/merge-patch+json", "application/json-merge-patch"],
)
def test_patch_formats_we_do_not_speak_are_a_415(media: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        parse_body(media, b'{"op":"replace"}')


def test_json_patch_is_still_json() -> None:
    assert parse_body("application/json-patch+json", b'[{"op":"remove","path":"/a"}]') == [
        {"op": "remove", "path": "/a"}
    ]


@pytest.mark.parametrize("kind", ["searchset", "history"])
def test_a_bundle_without_entries_has_no_entry_array(kind: str) -> None:
    empty = fhirjson.loads(bundle(kind, iter(()), total=0 if kind == "searchset" else None))
    assert "entry" not in empty
    assert validate_resource(empty) is empty


# -- XML of the R4 types without an R4B model --------------------------------------------------


@pytest.mark.parametrize("rtype", sorted(STRUCTURE_ONLY_TYPES))
def test_every_structure_only_type_is_read_from_xml(rtype: str) -> None:
    body = f'<{rtype} xmlns="http://hl7.org/fhir"><id value="x"/></{rtype}>'.encode()
    try:
        assert xml_to_json(body) == {"resourceType": rtype, "id": "x"}
    except InvalidResource as error:  # its required elements are missing: read, then checked
        assert {issue.code for issue in error.issues} == {"required"}, error.diagnostics
