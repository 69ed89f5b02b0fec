"""AuditEvents for a signed-in user (fhirUser, role, app), and who may read the trail."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fhir_server.audit.access_log import _may_see
from fhir_server.audit.chain import verify
from fhir_server.audit.events import EventBuilder
from fhir_server.audit.guard import AuditGuard, may_audit
from fhir_server.audit.index import index_event
from fhir_server.audit.records import Exchange, hl7_exchange
from fhir_server.audit.trail import AuditTrail
from fhir_server.auth.roles import may_grant
from fhir_server.context import AccessContext, AllowAll
from fhir_server.errors import Forbidden
from fhir_server.interactions.observed import Observed
from fhir_server.interactions.service import FhirService
from fhir_server.model.validate import validate_resource
from fhir_server.search.extract import Indexer
from fhir_server.search.registry import load_registry
from fhir_server.storage.base import StoredResource
from fhir_server.storage.sqlite import SQLiteStorage

CLINICIAN = AccessContext(
    subject="u-7",
    scopes=frozenset({"user/*.rs"}),
    client_id="growth-chart",
    fhir_user="Practitioner/dr-who",
    role="clinician",
)
OFFICER = AccessContext(
    subject="u-9", scopes=frozenset({"user/AuditEvent.rs"}), role="privacy-officer"
)
BACKEND = AccessContext(subject="c", scopes=frozenset({"system/AuditEvent.rs"}), client_id="c")
WIDE = AccessContext(subject="c", scopes=frozenset({"system/*.rs"}), client_id="c")
PATIENT = AccessContext(subject="u-1", scopes=frozenset({"patient/*.rs"}), patient="p1")


@pytest.fixture(scope="module")
def builder() -> EventBuilder:
    registry = load_registry()
    return EventBuilder(registry, Indexer(registry), "https://fhir.example.org/fhir")


def test_a_users_read_names_the_user_the_app_and_the_patient(builder: EventBuilder) -> None:
    obs = StoredResource(
        "Observation",
        "o1",
        3,
        "2026-01-01T00:00:00.000000Z",
        False,
        b'{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},'
        b'"subject":{"reference":"Patient/p1"}}',
    )
    seen = Observed(context=CLINICIAN, resources=[obs])
    ex = Exchange("rest", "GET", "Observation/o1", b"", 200, "192.0.2.5", 1.7e9, seen)
    event = builder.build(ex)
    validate_resource(event)
    user, app = event["agent"]
    assert user["who"] == {"reference": "Practitioner/dr-who"} and user["requestor"] is True
    assert user["role"] == [{"text": "clinician"}] and user["altId"] == "u-7"
    assert user["network"] == {"address": "192.0.2.5", "type": "2"}
    assert app["who"]["identifier"]["value"] == "growth-chart" and app["requestor"] is False
    refs = [(e["role"]["code"], e["what"]["reference"]) for e in event["entity"]]
    assert refs == [("4", "Observation/o1"), ("1", "Patient/p1")]
    assert event["recorded"] == "2023-11-14T22:13:20.000Z"
    assert event["source"]["site"] == "https://fhir.example.org/fhir"


def test_failed_sign_in_names_the_user_name_tried(builder: EventBuilder) -> None:
    seen = Observed(user="mallory")
    event = builder.build(
        Exchange("login", "POST", "/auth/login", b"", 401, "192.0.2.9", 1.7e9, seen)
    )
    validate_resource(event)
    assert event["type"]["code"] == "110114" and event["subtype"][0]["code"] == "110122"
    assert event["outcome"] == "4" and event["agent"][0]["name"] == "mallory"


def test_only_audit_roles_read_and_nobody_writes() -> None:
    guard = AuditGuard(AllowAll(), frozenset({"Patient", "AuditEvent"}))
    assert may_audit(OFFICER) and may_audit(BACKEND)
    assert not may_audit(CLINICIAN) and not may_audit(WIDE) and not may_audit(PATIENT)
    for ctx in (CLINICIAN, WIDE, PATIENT):
        with pytest.raises(Forbidden):
            guard.check(ctx, "search", "AuditEvent")
    guard.check(OFFICER, "search", "AuditEvent")
    for ctx in (OFFICER, BACKEND):
        for action in ("create", "update", "delete"):
            with pytest.raises(Forbidden):
                guard.check(ctx, action, "AuditEvent")
    assert may_grant("privacy-officer", "user/AuditEvent.rs")
    assert not may_grant("privacy-officer", "user/AuditEvent.c")
    assert _may_see(PATIENT, "p1") and not _may_see(PATIENT, "p2") and _may_see(OFFICER, "p2")


def shapes() -> list[Exchange]:
    """One exchange of each shape the builder makes events of."""
    patient = StoredResource("Patient", "p1", 2, "2026-01-01T00:00:00.000000Z", False, b"{}")
    obs = StoredResource(
        "Observation",
        "o1",
        1,
        "2026-01-01T00:00:00.000000Z",
        False,
        b'{"resourceType":"Observation","subject":{"reference":"Patient/p2"}}',
    )
    backend = AccessContext(subject="svc", client_id="svc", scopes=frozenset({"system/*.rs"}))
    user = Observed(context=CLINICIAN, resources=[patient, obs])
    return [
        Exchange("rest", "GET", "Observation", b"subject=Patient/p2", 200, "10.0.0.2", 1.7e9, user),
        Exchange(
            "rest", "DELETE", "Observation/o1", b"", 204, None, 1.7e9, Observed(backend, [obs])
        ),
        Exchange("rest", "GET", "Patient/p9", b"", 401, "10.0.0.3", 1.7e9, Observed()),
        Exchange("token", "POST", "/auth/token", b"", 401, "::1", 1.7e9, Observed(client="c9")),
        Exchange("login", "POST", "/auth/login", b"", 303, "::1", 1.7e9, Observed(user="ann")),
        Exchange("hl7", "MLLP", "hl7v2", b"", 200, "10.1.1.1", 1.7e9, user, "ACK^A01^ACK AA C1"),
    ]


@pytest.mark.parametrize("n", range(6))
def test_the_hand_made_index_equals_the_fhirpath_one(builder: EventBuilder, n: int) -> None:
    event = builder.build(shapes()[n])
    mine = index_event(event)
    assert len(mine) == len(set(mine))
    assert set(mine) == set(builder.indexer.extract(event))


@pytest.mark.parametrize(
    ("code", "status", "outcome"), [("AA", 200, "0"), ("AE", 400, "4"), ("CR", 500, "8")]
)
def test_an_hl7_ack_becomes_one_import_event(
    builder: EventBuilder, code: str, status: int, outcome: str
) -> None:
    ack = f"MSH|^~\\&|FHIR|HUB|LAB|NORTH|20240102||ACK^A01^ACK|9|P|2.5.1\rMSA|{code}|C77\r"
    ex = hl7_exchange(ack.encode(), "10.2.2.2", None)
    assert (ex.status, ex.detail) == (status, f"ACK^A01^ACK {code} C77")
    event = builder.build(ex)
    assert event["outcome"] == outcome and event["subtype"][0]["code"] == "A01"
    message = event["entity"][-1]
    assert message["what"] == {"identifier": {"value": "C77"}}
    assert hl7_exchange(b"\xff\xfe garbage", None, None).status == 400  # never raises


async def test_an_exchange_that_cannot_be_built_still_leaves_a_bare_event(
    builder: EventBuilder, tmp_path: Path
) -> None:
    storage = SQLiteStorage(str(tmp_path / "fhir.db"))
    await storage.open()
    try:
        trail = AuditTrail(FhirService(storage, registry=builder.registry), builder)
        broken = Observed(context=CLINICIAN, resources=["not a resource"])  # type: ignore[list-item]
        trail.record(Exchange("rest", "GET", "Patient/p1", b"", 200, None, 1.7e9, broken))
        await trail.close()
        (rec,) = [r async for r in storage.iter_current("AuditEvent")]
        event = orjson.loads(rec.data)
        validate_resource(event)
        assert (event["action"], event["outcome"]) == ("E", "0")
        assert (await verify(storage)).problems == []
    finally:
        await storage.close()
