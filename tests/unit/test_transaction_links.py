"""`links.edit_links`: which strings of a resource are links, by element type (R4 trules)."""

from __future__ import annotations

import copy
from typing import Any

from fhir_server.interactions.links import Link, edit_links

URN = "urn:uuid:7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"


def replace_urn(kind: Link, text: str) -> str:
    return "Patient/1" if text == URN else text


def seen(resource: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def note(kind: Link, text: str) -> str:
        found.append((kind.value, text))
        return text

    edit_links(resource, note)
    return found


def test_kinds_in_document_order() -> None:
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": URN, "coding": [{"system": "urn:oid:1.2", "code": URN}]},
        "subject": {"reference": "Patient?identifier=a|1", "type": "Patient"},
        "focus": [{"reference": URN}],
        "valueString": URN,
        "extension": [{"url": "http://e/x", "valueOid": "urn:oid:1.2.3"}],
    }
    assert seen(resource) == [
        ("uri", "urn:oid:1.2"),  # Coding.system is a uri
        ("reference", "Patient?identifier=a|1"),
        ("uri", "Patient"),  # Reference.type is a uri
        ("reference", URN),
        ("uri", "http://e/x"),
        ("uri", "urn:oid:1.2.3"),  # Extension.url and valueOid
    ]


def test_copy_on_write_leaves_the_input_alone() -> None:
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": URN},
        "note": [{"text": URN}],
    }
    before = copy.deepcopy(resource)
    out = edit_links(resource, replace_urn)
    assert resource == before
    assert out["subject"] == {"reference": "Patient/1"} and out["note"] is resource["note"]
    assert edit_links(before, lambda kind, text: text) is before


def test_narrative_links_only_in_href_and_src() -> None:
    div = (
        f"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p title='{URN}'>{URN}</p>"
        f"<a href='{URN}'>x</a><img SRC=\"{URN}\"/></div>"
    )
    resource = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    out = edit_links(resource, replace_urn)["text"]["div"]
    assert f"title='{URN}'>{URN}</p>" in out
    assert "href='Patient/1'" in out and 'SRC="Patient/1"' in out


def test_canonical_and_contained_resources() -> None:
    resource = {
        "resourceType": "Questionnaire",
        "status": "active",
        "url": URN,
        "derivedFrom": [URN],  # canonical: not a link to rewrite
        "contained": [{"resourceType": "ValueSet", "status": "active", "url": URN}],
    }
    out = edit_links(resource, replace_urn)
    assert out["url"] == "Patient/1" and out["derivedFrom"] == [URN]
    assert out["contained"][0]["url"] == "Patient/1"


def test_a_type_without_a_model_links_only_by_reference() -> None:
    resource = {
        "resourceType": "MedicinalProduct",
        "identifier": [{"value": URN}],
        "manufacturer": [{"reference": URN}],
        "name": [{"productName": URN}],
    }
    out = edit_links(resource, replace_urn)
    assert out["manufacturer"] == [{"reference": "Patient/1"}]
    assert out["identifier"] == [{"value": URN}] and out["name"] == [{"productName": URN}]
