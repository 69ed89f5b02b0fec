"""Prefetch templates, hook request checks and the response check, as functions."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from cds_hooks.hook_request import parse_hook_request
from cds_hooks.jwks import DEFAULT_SECONDS, lifetime
from cds_hooks.prefetch import Unavailable, render, resolve, tokens
from cds_hooks.registry import CdsServices
from cds_hooks.response_check import problems
from cds_hooks.service import ServiceDefinition
from fhir_server.errors import BadRequest

DEFINITION = ServiceDefinition(
    "s", "patient-view", "t", "d", prefetch={"p": "Patient/{{context.patientId}}"}
)


def test_tokens_come_from_the_context_and_the_user_type() -> None:
    values = tokens({"userId": "PractitionerRole/r1", "patientId": "p1", "encounterId": "e1"})
    assert values["context.patientId"] == "p1" and values["context.encounterId"] == "e1"
    assert values["userPractitionerRoleId"] == "r1" and "userPractitionerId" not in values
    assert tokens({"userId": "Patient/p9"})["userPatientId"] == "p9"
    assert tokens({"userId": "RelatedPerson/x"})["userRelatedPersonId"] == "x"


def test_values_are_percent_encoded_never_concatenated() -> None:
    template = "Observation?patient={{context.patientId}}&code=x"
    rendered = render(template, {"context.patientId": "1&_id=2/../Patient"})
    assert rendered == "Observation?patient=1%26_id%3D2%2F..%2FPatient&code=x"


def test_a_template_with_a_token_without_value_resolves_to_none() -> None:
    assert render("Practitioner/{{userPractitionerId}}", {}) is None


async def test_resolve_keeps_what_arrived_and_fetches_the_rest() -> None:
    request = parse_hook_request(
        b'{"hook":"patient-view","hookInstance":"i","context":{"userId":"Practitioner/1",'
        b'"patientId":"p1"},"prefetch":{"a":{"resourceType":"Patient","id":"p1"},"b":null,'
        b'"c":{"resourceType":"OperationOutcome"}}}',
        DEFINITION,
    )
    asked: list[str] = []

    class Source:
        async def fetch(self, query: str):
            asked.append(query)
            return {"resourceType": "Bundle", "type": "searchset"}

    async def source() -> Source:
        return Source()

    templates = {
        "a": "Patient/{{context.patientId}}",
        "b": "Condition?patient={{context.patientId}}",
        "c": "Observation?patient={{context.patientId}}",
        "d": "Practitioner/{{userPractitionerId}}",
        "e": "MedicationRequest?subject=Patient/{{context.patientId}}",
    }
    resolved = await resolve(templates, request, source)
    assert resolved["a"] == {"resourceType": "Patient", "id": "p1"} and resolved["b"] is None
    assert resolved["d"] == {"resourceType": "Bundle", "type": "searchset"}
    assert asked == [
        "Observation?patient=p1",
        "Practitioner/1",
        "MedicationRequest?subject=Patient/p1",
    ]

    async def nowhere() -> Source:
        raise Unavailable("no server")

    with pytest.raises(Unavailable):
        await resolve(templates, request, nowhere)


@pytest.mark.parametrize(
    "context",
    [
        {"userId": "Device/1", "patientId": "p"},
        {"userId": "Practitioner/1", "patientId": "p p"},
        {"userId": "Practitioner/1", "patientId": "p", "encounterId": 3},
    ],
)
def test_context_fields_of_the_wrong_form_are_400(context) -> None:
    body = {"hook": "patient-view", "hookInstance": "i", "context": context}
    with pytest.raises(BadRequest):
        parse_hook_request(json.dumps(body).encode(), DEFINITION)


def test_the_response_check_names_each_problem() -> None:
    card: dict[str, Any] = {
        "summary": "x" * 140,
        "indicator": "danger",
        "source": {},
        "suggestions": [{"label": "s", "actions": [{"type": "create", "description": "d"}]}],
        "overrideReasons": [{"code": "c", "system": "s"}],
        "links": [
            {"label": "a", "url": "https://app.example/launch", "type": "smart"},
            {"label": "b", "url": "/relative", "type": "absolute"},
            {"label": "c", "url": "https://x.example", "type": "absolute", "appContext": "z"},
        ],
        "detail": "",
    }
    found = problems({"cards": [card]}, smart_origins={"https://other.example"})
    assert found == [
        "cards[0].source is empty or null",
        "cards[0].detail is empty or null",
        "cards[0].summary must be a string of 1-139 characters",
        "cards[0].indicator must be one of info, warning, critical",
        "cards[0].source.label is required",
        "cards[0].selectionBehavior is required with suggestions",
        "cards[0].suggestions[0].actions[0] needs a resource",
        "cards[0].overrideReasons[0] needs code, system and display",
        "cards[0].links[0] launches no registered SMART app (https://app.example/launch)",
        "cards[0].links[1].url must be an absolute http(s) URL",
        "cards[0].links[2].appContext is for smart links only",
    ]
    ok = {**card, "links": [card["links"][0]]}
    assert "launches no registered" not in str(problems({"cards": [ok]}, {"https://app.example"}))
    assert problems({"cards": []}) == []


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("max-age=60", 60.0),
        ("public, max-age=10000000", 86400.0),
        ("no-store", 0.0),
        ("no-cache, max-age=60", 0.0),
        (None, DEFAULT_SECONDS),
    ],
)
def test_jwks_lifetime_follows_cache_control(header, seconds: float) -> None:
    assert lifetime(header) == seconds


class _Service:
    def __init__(self, definition: ServiceDefinition) -> None:
        self.definition = definition

    def evaluate(self, call: Any) -> Any:
        raise NotImplementedError


@pytest.mark.parametrize(
    ("service_id", "prefetch", "why"),
    [
        ("a b", {}, "must match"),
        ("s", {"p": "Patient/{{context.patient}}"}, "unknown token {{context.patient}}"),
        ("s", {"p": "https://elsewhere.example/Patient/1"}, "not a query relative"),
        ("s", {"p": "/Patient/{{context.patientId}}"}, "not a query relative"),
    ],
)
def test_the_registry_refuses_bad_ids_and_templates(service_id, prefetch, why: str) -> None:
    definition = ServiceDefinition(service_id, "patient-view", "t", "d", prefetch=prefetch)
    with pytest.raises(ValueError, match=re.escape(why)):
        CdsServices([_Service(definition)])


def test_the_registry_refuses_a_second_service_with_an_id() -> None:
    services = CdsServices([_Service(DEFINITION)])
    with pytest.raises(ValueError, match="two CDS services"):
        services.add(_Service(DEFINITION))
    assert services.discovery()["services"][0]["prefetch"] == DEFINITION.prefetch
