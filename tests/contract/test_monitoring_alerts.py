"""Remote monitoring on every engine: readings converted on the way in (`add_transform`),
alerts raised inside the reading's transaction (`add_trigger`), one open alert per patient
and code under racing writes, acknowledgement, and rollback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.monitoring.alerts import ALERT_SYSTEM
from adapters.monitoring.plugin import Options, install
from fhir_server.context import SYSTEM
from fhir_server.errors import FhirError, Unprocessable
from fhir_server.interactions.common import new_id
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.model import fhirjson
from fhir_server.storage.base import Storage

UCUM = "http://unitsofmeasure.org"


def reading(patient: str, value: float, code: str = "8867-4", unit: str = "/min") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "device": {"reference": "Device/watch-1"},
        "effectiveDateTime": "2026-12-01T08:00:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


async def service(storage: Storage, **options: Any) -> FhirService:
    svc = FhirService(storage)
    install(svc, Options(**options))
    for type, id in (("Patient", "p1"), ("Patient", "p2"), ("Practitioner", "nurse")):
        await svc.handle(
            Request("PUT", f"{type}/{id}", body={"resourceType": type, "id": id}, context=SYSTEM)
        )
    return svc


async def post(svc: FhirService, resource: dict[str, Any]) -> dict[str, Any]:
    response = await svc.handle(
        Request("POST", resource["resourceType"], body=resource, context=SYSTEM)
    )
    body = fhirjson.loads(response.body) if isinstance(response.body, bytes) else response.body
    assert isinstance(body, dict)
    return body


async def search(svc: FhirService, type: str, **params: str) -> list[dict[str, Any]]:
    response = await svc.handle(Request("GET", type, query=tuple(params.items()), context=SYSTEM))
    body = response.body
    bundle = fhirjson.loads(body) if isinstance(body, bytes) else body
    return [e["resource"] for e in bundle.get("entry") or () if e["search"]["mode"] == "match"]


async def flags(svc: FhirService, patient: str, code: str = "8867-4") -> list[dict[str, Any]]:
    return await search(svc, "Flag", identifier=f"{ALERT_SYSTEM}|Patient/{patient}/{code}")


async def test_units_are_converted_before_the_write_and_bad_ones_refused(storage: Storage) -> None:
    svc = await service(storage)
    stored = await post(svc, reading("p1", 185, "29463-7", "[lb_av]"))
    assert stored["valueQuantity"]["code"] == "kg"
    assert stored["valueQuantity"]["value"] == pytest.approx(83.91)
    again = await storage.read("Observation", stored["id"])
    assert again is not None and fhirjson.loads(again.data)["valueQuantity"]["code"] == "kg"
    found = await search(
        svc, "Observation", **{"value-quantity": "gt80|http://unitsofmeasure.org|kg"}
    )
    assert [o["id"] for o in found] == [stored["id"]]
    with pytest.raises(Unprocessable) as refused:
        await post(svc, reading("p1", 70, "29463-7", "mm[Hg]"))
    assert refused.value.issues[0].expression == ("Observation.valueQuantity.code",)


async def test_an_out_of_band_reading_raises_one_alert_until_it_is_acknowledged(
    storage: Storage,
) -> None:
    svc = await service(storage)
    goal = await post(
        svc,
        {
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "description": {"text": "heart rate"},
            "subject": {"reference": "Patient/p1"},
            "target": [
                {
                    "measure": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "detailRange": {
                        "low": {"value": 50, "system": UCUM, "code": "/min"},
                        "high": {"value": 100, "system": UCUM, "code": "/min"},
                    },
                }
            ],
        },
    )
    plan = await post(
        svc,
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": "Patient/p1"},
            "author": {"reference": "Practitioner/nurse"},
            "goal": [{"reference": f"Goal/{goal['id']}"}],
        },
    )
    await post(svc, reading("p1", 95))  # inside the plan's band (the default is 40-130)
    assert await flags(svc, "p1") == []
    high = await post(svc, reading("p1", 112))  # above the plan's 100, within the default
    await post(svc, reading("p1", 140))  # the alert is open: nothing new
    [flag] = await flags(svc, "p1")
    assert flag["status"] == "active" and flag["author"] == {"reference": "Device/watch-1"}
    assert flag["extension"][0]["valueReference"] == {"reference": f"Observation/{high['id']}"}
    [message] = await search(svc, "Communication", recipient="Practitioner/nurse")
    assert message["about"] == [
        {"reference": f"Observation/{high['id']}"},
        {"reference": f"Flag/{flag['id']}"},
    ]
    assert message["basedOn"] == [{"reference": f"CarePlan/{plan['id']}"}]
    assert "112 /min is above 100 /min" in message["payload"][0]["contentString"]
    acknowledged = {**flag, "status": "inactive"}
    await svc.handle(Request("PUT", f"Flag/{flag['id']}", body=acknowledged, context=SYSTEM))
    await post(svc, reading("p1", 45))  # below the plan's 50
    assert sorted(f["status"] for f in await flags(svc, "p1")) == ["active", "inactive"]
    assert len(await search(svc, "Communication", recipient="Practitioner/nurse")) == 2


def blood_pressure(patient: str, systolic: float, diastolic: float) -> dict[str, Any]:
    panel = reading(patient, 0, "85354-9")
    del panel["valueQuantity"]
    panel["component"] = [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "system": UCUM, "code": "mm[Hg]"},
        }
        for code, value in (("8480-6", systolic), ("8462-4", diastolic))
    ]
    return panel


async def test_racing_readings_raise_exactly_one_alert(storage: Storage) -> None:
    """Two writers interleaved: the first holds its transaction open after its alert is
    written (not yet committed) while the second writes; the second must wait for it (the
    per patient and code lock; on SQLite the single writer) and then see the open alert."""
    svc = await service(storage, recipients=("Practitioner/nurse",))
    svc.write_retries = 100  # the waiting writer retries (MongoDB) for as long as it is held
    stored, release = asyncio.Event(), asyncio.Event()

    async def write(panel: dict[str, Any], hold: bool) -> str:
        async def work(tx: Any) -> str:
            rec = await svc.store(
                tx, "Observation", new_id(), svc.validate(panel), current=None, method="POST"
            )
            if hold:
                stored.set()
                await release.wait()
            return rec.id

        return await svc.in_transaction(None, work)

    first = asyncio.create_task(write(blood_pressure("p2", 200, 95), hold=True))
    await stored.wait()
    second = asyncio.create_task(write(blood_pressure("p2", 210, 120), hold=False))
    await asyncio.sleep(0.3)  # the second writer runs up to the lock meanwhile
    release.set()
    ids = await asyncio.gather(first, second)
    assert len(set(ids)) == 2  # both readings stored
    [flag] = await flags(svc, "p2", "85354-9")
    assert "Systolic blood pressure 200 mm[Hg] is above 180" in flag["code"]["text"]
    [message] = await search(svc, "Communication", subject="Patient/p2")
    assert message["recipient"] == [{"reference": "Practitioner/nurse"}]  # no plan: defaults
    many = await asyncio.gather(
        *(post(svc, blood_pressure("p2", 220, 100)) for _ in range(6)), return_exceptions=True
    )
    assert all(isinstance(r, dict) for r in many), many
    assert len(await flags(svc, "p2", "85354-9")) == 1


async def test_a_rolled_back_reading_leaves_no_alert(storage: Storage) -> None:
    svc = await service(storage)
    bad = reading("p1", 120, "29463-7", "kPa")  # refused: kPa is no weight
    day = [reading("p1", v) for v in (72, 150, 155)] + [bad]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": "Observation"}} for r in day
        ],
    }
    with pytest.raises(FhirError):
        await svc.handle(Request("POST", "", body=bundle, context=SYSTEM))
    assert await flags(svc, "p1") == []
    assert await search(svc, "Communication", subject="Patient/p1") == []
    assert await search(svc, "Observation", subject="Patient/p1") == []
    bundle["entry"] = bundle["entry"][:3]  # the day without the bad reading
    await svc.handle(Request("POST", "", body=bundle, context=SYSTEM))
    assert len(await flags(svc, "p1")) == 1  # two readings above 130 in one transaction
    assert len(await search(svc, "Communication", subject="Patient/p1")) == 1
