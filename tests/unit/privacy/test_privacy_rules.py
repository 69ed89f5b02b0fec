"""The privacy rules as functions: consent parsing and evaluation, label clearance, the
masking table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from fhir_server.context import SYSTEM, AccessContext, AllowAll
from fhir_server.privacy.consent import Caller, ConsentIndex, parse_consent
from fhir_server.privacy.labels import DEFAULT_CLEARANCE, clearance_of
from fhir_server.privacy.masking import last_four, mask
from fhir_server.privacy.policy import PrivacyPolicy
from fhir_server.search.conditions import AnyOf, TokenCondition
from fhir_server.search.registry import load_registry
from fhir_server.storage.base import StoredResource

SCOPE = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
    ]
}
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _consent(provision: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": "c",
        "status": "active",
        "scope": SCOPE,
        "patient": {"reference": "Patient/p"},
        "provision": provision,
        **extra,
    }


def _rec(resource: dict[str, Any], deleted: bool = False) -> StoredResource:
    data = b"" if deleted else orjson.dumps(resource)
    return StoredResource(
        resource["resourceType"], resource["id"], 1, "2026-01-01T00:00:00Z", deleted, data
    )


def test_only_active_patient_privacy_consents_count() -> None:
    assert parse_consent(_consent({"type": "deny"})) is not None
    assert parse_consent(_consent({"type": "deny"}, status="inactive")) is None
    research = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}
        ]
    }
    assert parse_consent(_consent({"type": "deny"}, scope=research)) is None
    assert parse_consent(_consent({"type": "deny"}, patient={"reference": "Group/g"})) is None


def test_a_provision_applies_only_within_its_period() -> None:
    consent = parse_consent(
        _consent({"type": "deny", "period": {"start": "2026-05-01", "end": "2026-07-01"}})
    )
    assert consent is not None
    caller = Caller(frozenset(), frozenset())
    for moment, denied in (
        (datetime(2026, 4, 30, tzinfo=UTC), False),
        (NOW, True),
        (datetime(2026, 7, 2, tzinfo=UTC), False),
    ):
        at = Caller(caller.references, caller.purposes, moment)
        assert consent.denial(at, "Observation", True) is denied


def test_a_code_provision_becomes_a_condition_on_the_resource() -> None:
    code = {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]}
    consent = parse_consent(
        _consent({"type": "permit", "provision": [{"type": "deny", "code": [code]}]})
    )
    assert consent is not None
    caller = Caller(frozenset(), frozenset(), NOW)
    assert consent.denial(caller, "Observation", True) == TokenCondition(
        "code", "http://loinc.org", "1234-5"
    )
    assert consent.denial(caller, "Patient", False) is False  # no code to match on a Patient


def test_deny_wins_among_exceptions_that_apply() -> None:
    org = {"reference": {"reference": "Organization/o"}}
    both = [{"type": "permit", "actor": [org]}, {"type": "deny", "actor": [org]}]
    consent = parse_consent(_consent({"type": "permit", "provision": both}))
    assert consent is not None
    assert (
        consent.denial(Caller(frozenset({"Organization/o"}), frozenset(), NOW), "Observation", True)
        is True
    )
    assert (
        consent.denial(Caller(frozenset({"Organization/x"}), frozenset(), NOW), "Observation", True)
        is False
    )


def test_the_index_follows_updates_and_deletions() -> None:
    index = ConsentIndex()
    index.apply(_rec(_consent({"type": "deny"})))
    assert set(index.patients()) == {"p"}
    index.apply(_rec(_consent({"type": "deny"}, status="inactive")))
    assert index.patients() == {}
    index.apply(_rec(_consent({"type": "deny"})))
    index.apply(_rec({"resourceType": "Consent", "id": "c"}, deleted=True))
    assert index.patients() == {}


def test_clearance_by_role_backend_and_system() -> None:
    def ctx(**kw: Any) -> AccessContext:
        return AccessContext(subject="s", **kw)

    assert "V" not in clearance_of(ctx(role="clinician"), DEFAULT_CLEARANCE)
    assert "HIV" in clearance_of(ctx(role="clinician"), DEFAULT_CLEARANCE)
    assert clearance_of(ctx(role="front-desk"), DEFAULT_CLEARANCE) == frozenset()
    assert clearance_of(ctx(role="unheard-of"), DEFAULT_CLEARANCE) == frozenset()
    assert "R" in clearance_of(ctx(scopes=frozenset({"system/*.rs"})), DEFAULT_CLEARANCE)
    assert clearance_of(ctx(scopes=frozenset({"user/*.rs"})), DEFAULT_CLEARANCE) == frozenset()
    assert "V" in clearance_of(SYSTEM, DEFAULT_CLEARANCE)


def test_labels_withhold_on_read_for_the_uncleared_only() -> None:
    policy = PrivacyPolicy(AllowAll(), load_registry(), ConsentIndex())
    labelled = {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"text": "x"},
        "meta": {
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
            ]
        },
    }
    assert policy.visible(AccessContext(subject="n", role="nurse"), _rec(labelled))
    assert not policy.visible(AccessContext(subject="f", role="front-desk"), _rec(labelled))
    rule = policy.withholding(AccessContext(subject="f", role="front-desk"), "Observation")
    assert isinstance(rule, AnyOf) and len(rule.conditions) == 20  # 10 labels, 2 systems each


def test_masking_by_kind() -> None:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"},
            {"type": {"coding": [{"code": "MR"}]}, "value": "MRN-1"},
        ],
    }
    assert last_four("123-45-6789") == "***-**-6789"
    assert mask(patient, {"SS": "last4"})
    assert [i.get("value") for i in patient["identifier"]] == ["***-**-6789", "MRN-1"]
    assert mask(patient, {"*": "hidden"})
    assert all("value" not in i for i in patient["identifier"])
    assert [s["code"] for s in patient["meta"]["security"]] == ["MASKED"]
    assert not mask({"resourceType": "Patient"}, {"*": "hidden"})


def test_present_masks_only_for_roles_in_the_table() -> None:
    policy = PrivacyPolicy(AllowAll(), load_registry(), ConsentIndex())
    rec = _rec(
        {
            "resourceType": "Patient",
            "id": "p",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"}],
        }
    )
    assert policy.present(AccessContext(subject="c", role="clinician"), rec) is rec
    assert policy.present(SYSTEM, rec) is rec
    shown = orjson.loads(policy.present(AccessContext(subject="f", role="front-desk"), rec).data)
    assert shown["identifier"][0]["value"] == "***-**-6789"
