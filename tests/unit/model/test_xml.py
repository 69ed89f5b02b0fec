"""FHIR XML <-> JSON (fhir_server.model.xml), expectations written from R4 xml.html."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from lxml import etree

from fhir_server.errors import BadRequest, InvalidResource
from fhir_server.model.xml import FHIR_NS, json_to_xml, xml_to_json

XHTML = "http://www.w3.org/1999/xhtml"
F = f"{{{FHIR_NS}}}"

PATIENT = {
    "resourceType": "Patient",
    "id": "example",
    "meta": {
        "versionId": "1",
        "lastUpdated": "2020-01-01T00:00:00Z",
        "tag": [{"system": "urn:x", "code": "t"}],
    },
    "text": {
        "status": "generated",
        "div": f'<div xmlns="{XHTML}"><p>Peter <b>James</b> &amp; co</p>\n  <br/></div>',
    },
    "contained": [{"resourceType": "Organization", "id": "org1", "name": "ACME"}],
    "extension": [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {"city": "Paris"},
        }
    ],
    "identifier": [{"id": "i1", "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
    "active": True,
    "name": [
        {
            "use": "official",
            "family": "Chalmers",
            "given": ["Peter", "James", "Jim"],
            "_given": [
                None,
                {
                    "id": "g2",
                    "extension": [{"url": "http://example.org/middle", "valueBoolean": True}],
                },
                None,
            ],
        }
    ],
    "gender": "male",
    "birthDate": "1974-12-25",
    "_birthDate": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00",
            }
        ]
    },
    "multipleBirthInteger": 2,
    "managingOrganization": {"reference": "#org1"},
}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "o",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
    "effectiveDateTime": "2020-01-01T10:00:00.123+01:00",
    "issued": "2020-01-01T10:00:00.1Z",
    "valueQuantity": {"value": 72.5, "unit": "kg"},
    "component": [
        {"code": {"text": "a"}, "valueInteger": -3},
        {"code": {"text": "b"}, "valueQuantity": {"value": 1e-07}},
        {"code": {"text": "c"}, "valueBoolean": False},
    ],
}
BUNDLE = {
    "resourceType": "Bundle",
    "type": "searchset",
    "total": 2,
    "link": [{"relation": "self", "url": "http://example.org/fhir/Patient?_id=example"}],
    "entry": [
        {
            "fullUrl": "http://example.org/fhir/Patient/example",
            "resource": PATIENT,
            "search": {"mode": "match", "score": 1},
        },
        {
            "fullUrl": "http://example.org/fhir/Observation/o",
            "resource": OBSERVATION,
            "search": {"mode": "include"},
        },
    ],
}
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "invalid",
            "diagnostics": 'Patient.name[0]: bad <thing> & "quotes"',
            "expression": ["Patient.name[0]"],
        }
    ],
}
CAPABILITIES = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "date": "2024-01-01",
    "kind": "instance",
    "software": {"name": "fhir-server"},
    "implementation": {"description": "test", "url": "http://example.org/fhir"},
    "fhirVersion": "4.0.1",
    "format": ["json", "xml"],
    "rest": [
        {
            "mode": "server",
            "security": {
                "extension": [
                    {
                        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                        "extension": [{"url": "token", "valueUri": "http://example.org/token"}],
                    }
                ],
                "cors": True,
                "service": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                "code": "SMART-on-FHIR",
                            }
                        ]
                    }
                ],
            },
            "resource": [
                {
                    "type": "Patient",
                    "interaction": [{"code": "read"}],
                    "versioning": "versioned",
                    "searchInclude": ["Patient:organization"],
                    "searchParam": [{"name": "name", "type": "string"}],
                }
            ],
        }
    ],
}
ROUND_TRIPS = [
    PATIENT,
    OBSERVATION,
    BUNDLE,
    OUTCOME,
    CAPABILITIES,
    {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}},
    {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="},
    {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "u", "valueUuid": "urn:uuid:61ebe359-bfdc-1613-8bf2-c5e300945f0a"},
            {"name": "r", "resource": {"resourceType": "Patient", "id": "x"}},
            {"name": "p", "part": [{"name": "q", "valueCode": "x"}]},
        ],
    },
    {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "boolean"}]}],
    },
]


def canonical(resource: dict[str, Any]) -> str:
    return json.dumps(resource, sort_keys=True)


@pytest.mark.parametrize("pretty", [False, True])
@pytest.mark.parametrize("resource", ROUND_TRIPS, ids=lambda r: r["resourceType"])
def test_round_trip_keeps_every_value(resource: dict[str, Any], pretty: bool) -> None:
    before = copy.deepcopy(resource)
    xml = json_to_xml(resource, pretty=pretty)
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert canonical(xml_to_json(xml)) == canonical(resource)
    assert resource == before


def test_xml_follows_the_fhir_rules() -> None:
    root = etree.fromstring(json_to_xml(PATIENT))
    assert root.tag == F + "Patient" and root.nsmap == {None: FHIR_NS}
    names = [etree.QName(child).localname for child in root]
    assert names[:6] == ["id", "meta", "text", "contained", "extension", "identifier"]
    assert root.find(F + "id").get("value") == "example"
    assert root.find(F + "meta/" + F + "lastUpdated").get("value") == "2020-01-01T00:00:00Z"
    assert root.find(F + "identifier").get("id") == "i1"  # Element.id is an attribute
    extension = root.find(F + "extension")
    assert extension.get("url").endswith("patient-birthPlace")
    assert root.find(F + "contained/" + F + "Organization/" + F + "name").get("value") == "ACME"
    assert root.find(F + "active").get("value") == "true"
    given = root.findall(F + "name/" + F + "given")
    assert [g.get("value") for g in given] == ["Peter", "James", "Jim"]
    assert given[1].get("id") == "g2" and given[1].find(F + "extension") is not None
    birth = root.find(F + "birthDate")
    assert birth.get("value") == "1974-12-25"
    assert birth.find(F + "extension/" + F + "valueDateTime").get("value").endswith("-05:00")
    div = root.find(F + "text/{http://www.w3.org/1999/xhtml}div")
    assert div is not None and div.find(f"{{{XHTML}}}p/{{{XHTML}}}b").text == "James"


def test_values_are_written_as_stored() -> None:
    root = etree.fromstring(json_to_xml(OBSERVATION))
    assert root.find(F + "effectiveDateTime").get("value") == "2020-01-01T10:00:00.123+01:00"
    assert root.find(F + "issued").get("value") == "2020-01-01T10:00:00.1Z"
    values = [v.get("value") for v in root.iter(F + "value")]
    assert values == ["72.5", "1e-07"]
    assert [v.get("value") for v in root.iter(F + "valueInteger")] == ["-3"]
    assert [v.get("value") for v in root.iter(F + "valueBoolean")] == ["false"]


def test_pretty_output_leaves_the_narrative_alone() -> None:
    xml = json_to_xml(PATIENT, pretty=True)
    assert b'\n  <id value="example"/>' in xml
    assert f'<div xmlns="{XHTML}"><p>Peter <b>James</b> &amp; co</p>\n  <br/></div>'.encode() in xml


def test_stored_narrative_without_namespace_gets_the_xhtml_namespace() -> None:
    resource = {
        "resourceType": "Patient",
        "text": {"status": "generated", "div": "<div><p>x</p></div>"},
    }
    root = etree.fromstring(json_to_xml(resource))
    assert (
        root.find(F + "text/{http://www.w3.org/1999/xhtml}div/{http://www.w3.org/1999/xhtml}p").text
        == "x"
    )


def test_structure_only_types_are_written_in_r4_order_and_read_back() -> None:
    product = {
        "resourceType": "MedicinalProduct",
        "id": "m",
        "text": {"status": "generated", "div": f'<div xmlns="{XHTML}">x</div>'},
        "name": [{"productName": "x", "namePart": [{"part": "a", "type": {"code": "t"}}]}],
        "identifier": [{"value": "1"}],
        "meta": {"versionId": "1"},
    }
    root = etree.fromstring(json_to_xml(product))
    assert [etree.QName(c).localname for c in root] == ["id", "meta", "text", "identifier", "name"]
    assert root.find(F + "name/" + F + "namePart/" + F + "type/" + F + "code").get("value") == "t"
    assert xml_to_json(json_to_xml(product)) == product


SPEC_STYLE_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment before the resource -->
<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://hl7.org/fhir ../../schema/patient.xsd">
  <id value="example"/>
  <text>
    <status value="generated"/>
    <div xmlns="http://www.w3.org/1999/xhtml"><p>Jim &amp; <b>Chalmers</b></p></div>
  </text>
  <!-- MRN assigned by ACME healthcare -->
  <identifier>
    <use value="usual"/>
    <value value="12345"/>
  </identifier>
  <name id="n1">
    <family value="du March\xc3\xa9">
      <extension url="http://hl7.org/fhir/StructureDefinition/humanname-own-prefix">
        <valueString value="VV"/>
      </extension>
    </family>
    <given value="B\xc3\xa9n\xc3\xa9dicte"/>
    <given id="g2"/>
  </name>
  <deceasedBoolean value="false"/>
  <birthDate id="bd" value="1974-12-25"/>
  <multipleBirthInteger value="3"/>
</Patient>
"""


def test_xml_input_becomes_plain_fhir_json() -> None:
    assert xml_to_json(SPEC_STYLE_XML) == {
        "resourceType": "Patient",
        "id": "example",
        "text": {
            "status": "generated",
            "div": f'<div xmlns="{XHTML}"><p>Jim &amp; <b>Chalmers</b></p></div>',
        },
        "identifier": [{"use": "usual", "value": "12345"}],
        "name": [
            {
                "id": "n1",
                "family": "du Marché",
                "_family": {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix",
                            "valueString": "VV",
                        }
                    ]
                },
                "given": ["Bénédicte", None],
                "_given": [None, {"id": "g2"}],
            }
        ],
        "deceasedBoolean": False,
        "birthDate": "1974-12-25",
        "_birthDate": {"id": "bd"},
        "multipleBirthInteger": 3,
    }


def test_choice_and_renamed_elements_use_json_names() -> None:
    xml = (
        b'<Encounter xmlns="http://hl7.org/fhir"><status value="finished"/>'
        b'<class><code value="AMB"/></class><length><value value="1.50"/></length>'
        b"</Encounter>"
    )
    assert xml_to_json(xml) == {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "length": {"value": 1.5},
    }


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not xml",
        b'<Patient xmlns="http://hl7.org/fhir"><active value="true">',
        b'<Patient><active value="true"/></Patient>',
        b'<Patient xmlns="http://example.org"/>',
        b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Patient xmlns="http://hl7.org/fhir"><name><family value="&lol3;"/></name></Patient>""",
        b"""<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><name><family value="&xxe;"/></name></Patient>""",
        b"""<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>
<div xmlns="http://www.w3.org/1999/xhtml">&xxe;</div></text></Patient>""",
    ],
    ids=[
        "empty",
        "blank",
        "text",
        "unclosed",
        "no-namespace",
        "other-namespace",
        "billion-laughs",
        "xxe-attribute",
        "xxe-text",
    ],
)
def test_malformed_or_hostile_xml_is_a_400(body: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        xml_to_json(body)
    assert caught.type is BadRequest and caught.value.status == 400
    assert b"root:" not in caught.value.diagnostics.encode()  # no file content leaks


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        (
            b'<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>',
            "value",
            "Patient.active",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><foo value="1"/></Patient>',
            "structure",
            "Patient.foo",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><active value="true"/><active value="false"/>'
            b"</Patient>",
            "structure",
            "Patient.active",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><name><family value="x" foo="1"/></name>'
            b"</Patient>",
            "structure",
            "Patient.name[0].family",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><name>text<family value="x"/></name></Patient>',
            "structure",
            "Patient.name[0]",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><birthDate value="1974-13-01"/></Patient>',
            "value",
            "Patient.birthDate",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><contained><Organization><bad/></Organization>'
            b"</contained></Patient>",
            "structure",
            "Patient.contained[0].bad",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><contained><Foo/></contained></Patient>',
            "not-supported",
            "Patient.contained[0]",
        ),
        (b'<Foo xmlns="http://hl7.org/fhir"/>', "not-supported", "Foo"),
        (b'<MedicinalProduct xmlns="http://hl7.org/fhir"/>', "required", "MedicinalProduct.name"),
        (
            b'<MedicinalProduct xmlns="http://hl7.org/fhir"><name><productName value="x"/><foo/>'
            b"</name></MedicinalProduct>",
            "structure",
            "MedicinalProduct.name[0].foo",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div><p>x</p>'
            b"</div></text></Patient>",
            "structure",
            "Patient.text.div",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>'
            b'<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script></div></text></Patient>',
            "value",
            "Patient.text.div",
        ),
        (
            b'<Observation xmlns="http://hl7.org/fhir"><status value="final"/>'
            b'<code><text value="x"/></code>'
            b'<valueQuantity><value value="abc"/></valueQuantity></Observation>',
            "value",
            "Observation.value.ofType(Quantity).value",
        ),
        (
            b'<Observation xmlns="http://hl7.org/fhir"><status value="final"/>'
            b'<code><text value="x"/></code>'
            b'<valueQuantity><value value="1e400"/></valueQuantity></Observation>',
            "value",
            "Observation.value.ofType(Quantity).value",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><multipleBirthInteger value="1_000"/></Patient>',
            "value",
            "Patient.multipleBirth.ofType(integer)",
        ),
        (
            b'<Observation xmlns="http://hl7.org/fhir"><status value="final"/></Observation>',
            "required",
            "Observation.code",
        ),
    ],
)
def test_xml_of_an_invalid_resource_is_invalid_resource(body: bytes, code: str, path: str) -> None:
    with pytest.raises(InvalidResource) as caught:
        xml_to_json(body)
    assert next((i.code, i.expression) for i in caught.value.issues) == (code, (path,))


def test_json_from_xml_has_no_nulls_or_empty_arrays_beyond_primitive_alignment() -> None:
    result = xml_to_json(json_to_xml(BUNDLE))

    def walk(node: object, key: str = "") -> None:
        if isinstance(node, dict):
            assert node, key
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            assert node, key
            for item in node:
                assert item is not None or key in ("given", "_given"), key
                walk(item, key)

    walk(result)


def test_control_characters_that_xml_cannot_carry_are_replaced() -> None:
    resource = {"resourceType": "Patient", "name": [{"family": "a\x0bb\x00c"}]}
    assert xml_to_json(json_to_xml(resource))["name"] == [{"family": "a\ufffdb\ufffdc"}]
