"""Subscription matching on every engine: what a write queues, and for whom.

Writes go through the service; a subscription's outbox queue holds one entry per matching
version, written in the same transaction (a failed transaction queues nothing). Criteria
memory cannot decide (a chain) fall back to a search of the written resource's id."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from fhir_server.auth.policy import SmartPolicy
from fhir_server.context import AccessContext
from fhir_server.errors import Forbidden
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage
from subscriptions.delivery import Options
from subscriptions.model import CREATOR, creator_of, queue_of
from subscriptions.notifications import Event
from subscriptions.plugin import install
from subscriptions.registry import Registry
from tests.support.service_calls import call

LOINC = "http://loinc.org"


def obs(code: str, patient: str = "p1", value: float = 80) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-12-01T10:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min"},
    }


def subscription(criteria: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "active",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": "https://hooks.example.org/x"},
    }


async def setup(storage: Storage) -> tuple[FhirService, Registry]:
    svc = FhirService(storage)
    registry = await install(svc, Options())
    return svc, registry


async def subscribe(svc: FhirService, criteria: str) -> str:
    status, body = await call(svc, "POST", "Subscription", subscription(criteria))
    assert status == 201, body
    return str(body["id"])


async def queued(storage: Storage, sub: str) -> list[str]:
    entries = await storage.queue_entries(queue_of(sub), 0, limit=1000)
    return [Event.load(n, p).id for n, p in entries]


async def test_each_criterion_queues_exactly_the_matching_writes(storage: Storage) -> None:
    svc, _ = await setup(storage)
    status, body = await call(
        svc,
        "PUT",
        "Patient/p1",
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]},
    )
    assert status == 201, body
    await call(
        svc,
        "PUT",
        "Patient/p2",
        {"resourceType": "Patient", "id": "p2", "name": [{"family": "Roe"}]},
    )
    subs = {
        "token": await subscribe(svc, f"Observation?code={LOINC}|8867-4"),
        "code only": await subscribe(svc, "Observation?code=8867-4&subject=Patient/p2"),
        "quantity": await subscribe(svc, "Observation?value-quantity=gt100"),
        "date": await subscribe(svc, "Observation?date=ge2026-12-01"),
        "chain": await subscribe(svc, "Observation?subject:Patient.family=Doe"),
        "or": await subscribe(svc, "Observation?code=29463-7,8310-5"),
    }
    written = {}
    for name, body in {
        "hr-p1": obs("8867-4", "p1", 80),
        "hr-p2-high": obs("8867-4", "p2", 120),
        "weight-p1": obs("29463-7", "p1", 70),
        "temp-p2": obs("8310-5", "p2", 37),
    }.items():
        status, created = await call(svc, "POST", "Observation", body)
        assert status == 201, created
        written[name] = created["id"]
    expect = {
        "token": ["hr-p1", "hr-p2-high"],
        "code only": ["hr-p2-high"],
        "quantity": ["hr-p2-high"],
        "date": ["hr-p1", "hr-p2-high", "weight-p1", "temp-p2"],
        "chain": ["hr-p1", "weight-p1"],
        "or": ["weight-p1", "temp-p2"],
    }
    for name, sub in subs.items():
        assert await queued(storage, sub) == [written[w] for w in expect[name]], name


async def test_a_failed_transaction_queues_nothing(storage: Storage) -> None:
    svc, _ = await setup(storage)
    sub = await subscribe(svc, "Observation?code=8867-4")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": obs("8867-4"), "request": {"method": "POST", "url": "Observation"}},
            {"request": {"method": "DELETE", "url": "Observation/x"}, "fullUrl": "x"},
            {
                "resource": {"resourceType": "Observation"},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    status, _ = await call(svc, "POST", "", bundle)
    assert status >= 400
    assert await queued(storage, sub) == []
    await call(svc, "POST", "Observation", obs("8867-4"))
    assert len(await queued(storage, sub)) == 1


async def test_a_thousand_subscriptions_evaluate_only_their_own_token(storage: Storage) -> None:
    svc, registry = await setup(storage)
    ids = [f"s{n}" for n in range(1000)]
    for n, id in enumerate(ids):  # in the registry only: storing 1,000 would be slow here
        sub = subscription(f"Observation?code={LOINC}|code-{n}")
        registry.matcher.put(registry.read({**sub, "id": id}))
    values = svc.indexer.values_of(obs("code-7"), registry.matcher.params("Observation"))
    candidates = registry.matcher.candidates("Observation", values)
    assert [sub.id for sub, _ in candidates] == ["s7"]
    await call(svc, "POST", "Observation", obs("code-7"))
    assert len(await queued(storage, "s7")) == 1
    assert await queued(storage, "s8") == []


async def test_a_creator_hears_only_of_what_it_may_read(storage: Storage) -> None:
    """A practitioner limited to the patients of their organization (here p1) subscribes
    to every heart rate: only p1's are queued."""
    svc = FhirService(storage)
    svc.policy = SmartPolicy(svc.registry, svc.indexer)
    await install(svc, Options())
    doctor = AccessContext(
        subject="dr",
        scopes=frozenset({"user/Subscription.cruds", "user/Observation.rs"}),
        fhir_user="Practitioner/dr",
        user_patients=frozenset({"p1"}),
    )
    reader = replace(doctor, scopes=frozenset({"user/Observation.rs", "user/Subscription.rs"}))
    body = subscription("Observation?code=8867-4")
    with pytest.raises(Forbidden):  # creating one needs write access to Subscription
        await svc.handle(Request("POST", "Subscription", body=body, context=reader))
    forged = {"url": CREATOR, "extension": [{"url": "scopes", "valueString": "system/*.rs"}]}
    body = {**subscription("Observation?code=8867-4"), "extension": [forged]}
    response = await svc.handle(Request("POST", "Subscription", body=body, context=doctor))
    assert response.status == 201
    assert isinstance(response.body, bytes)
    sub = str(orjson.loads(response.body)["id"])
    own = await call(svc, "POST", "Observation", obs("8867-4", "p1"))
    await call(svc, "POST", "Observation", obs("8867-4", "p2"))  # not the doctor's patient
    assert await queued(storage, sub) == [own[1]["id"]]
    _, stored = await call(svc, "GET", f"Subscription/{sub}")
    recorded = creator_of(stored)  # the client's forged copy was replaced
    assert recorded is not None and recorded.scopes == doctor.scopes
    assert recorded.user_patients == frozenset({"p1"}) and len(stored["extension"]) == 1
