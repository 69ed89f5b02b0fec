"""Remote monitoring over real HTTP with authorization on.

A device (a SMART backend client: its token, from the token endpoint with a signed
assertion, carries only `system/Observation.c`) posts readings, alone and as a transaction
of a day's readings; a clinician's app (a token for the care team's resources) sets the
patient's monitoring plan, sees exactly one alert (Flag + Communication) for the first
reading out of band and none for the next, and acknowledges the Flag, which lets the next
one through. The care team's system subscribes to the Communications addressed to the
nurse (a rest-hook receiver on loopback) and hears of each alert once, in order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.support.receiver import Receiver
from tests.support.server import ServerProcess

UCUM = "http://unitsofmeasure.org"
ALERTS = "urn:fhir-server:remote-monitoring:alert"
DEVICE_SCOPE = "system/Observation.c"
CLINICIAN_SCOPE = (
    "system/Patient.cru system/Practitioner.cru system/Device.cru system/Goal.cru "
    "system/CarePlan.cru system/Observation.rs system/Flag.rus system/Communication.rs "
    "system/Subscription.cru"
)


def cli(database: Path, *args: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "fhir-server"), *args],
        env={**os.environ, "FHIR_DATABASE": str(database)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server with authorization on and one backend client (the tests ask it for a
    device's token and for a clinician app's, each with its own scopes)."""
    folder = tmp_path_factory.mktemp("monitoring")
    database = folder / "fhir.db"
    key = RSAKey.generate_key(2048, parameters={"kid": "client-1"})
    jwks = folder / "client.jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    scopes = f"{DEVICE_SCOPE} {CLINICIAN_SCOPE}"
    added = cli(
        database, "auth", "client", "add", "--name", "rpm", "--jwks", str(jwks), "--scopes", scopes
    )
    hook = Receiver().start()  # the care team's system, subscribed to its Communications
    process = ServerProcess(
        database,
        FHIR_AUTH="on",
        FHIR_SUBSCRIPTION_ALLOWED_HOSTS="127.0.0.1",
        FHIR_SUBSCRIPTION_BACKOFF="0.1",
        FHIR_SUBSCRIPTION_MAX_BACKOFF="0.5",
    ).start(timeout=120)
    try:
        client_id = added.split("client_id: ")[1].split()[0]
        yield {"server": process, "client": client_id, "key": key, "receiver": hook}
    finally:
        process.stop()
        hook.stop()


def token(monitored: dict[str, Any], scope: str) -> str:
    """A token for `scope`, as a backend client gets it (SMART Backend Services)."""
    token_url = monitored["server"].base.removesuffix("/fhir") + "/auth/token"
    now = int(time.time())
    client = monitored["client"]
    claims = {"iss": client, "sub": client, "aud": token_url, "exp": now + 240, "iat": now}
    header = {"alg": "RS384", "kid": "client-1", "typ": "JWT"}
    claims["jti"] = uuid.uuid4().hex
    assertion = jwt.encode(header, claims, monitored["key"], algorithms=["RS384"])
    reply = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["scope"] == scope
    return str(reply.json()["access_token"])


def client(monitored: dict[str, Any], token: str) -> httpx.Client:
    return httpx.Client(
        base_url=monitored["server"].base,
        timeout=60,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
    )


def reading(
    value: float, unit: str = "/min", code: str = "8867-4", at: str = "08:00"
) -> dict[str, Any]:
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
        "subject": {"reference": "Patient/pat-1"},
        "device": {"reference": "Device/cuff-1"},
        "effectiveDateTime": f"2026-12-01T{at}:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def alerts(care: httpx.Client) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    flags = care.get("/Flag", params={"identifier": f"{ALERTS}|Patient/pat-1/8867-4"})
    messages = care.get("/Communication", params={"recipient": "Practitioner/nurse-1"})
    assert flags.status_code == 200 and messages.status_code == 200
    return (
        [e["resource"] for e in flags.json().get("entry", [])],
        [e["resource"] for e in messages.json().get("entry", [])],
    )


def test_devices_post_readings_and_one_alert_reaches_the_care_team_until_acknowledged(
    monitored: dict[str, Any],
) -> None:
    with client(monitored, token(monitored, CLINICIAN_SCOPE)) as care:
        for body in (
            {"resourceType": "Patient", "id": "pat-1"},
            {"resourceType": "Practitioner", "id": "nurse-1"},
            {"resourceType": "Device", "id": "cuff-1"},
            {
                "resourceType": "Goal",
                "id": "hr-band",
                "lifecycleStatus": "active",
                "description": {"text": "Heart rate between 50 and 110"},
                "subject": {"reference": "Patient/pat-1"},
                "target": [
                    {
                        "measure": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                        "detailRange": {
                            "low": {"value": 50, "system": UCUM, "code": "/min"},
                            "high": {"value": 110, "system": UCUM, "code": "/min"},
                        },
                    }
                ],
            },
            {
                "resourceType": "CarePlan",
                "id": "monitoring",
                "status": "active",
                "intent": "plan",
                "subject": {"reference": "Patient/pat-1"},
                "author": {"reference": "Practitioner/nurse-1"},
                "activity": [
                    {"detail": {"status": "in-progress", "goal": [{"reference": "Goal/hr-band"}]}}
                ],
            },
        ):
            put = care.put(f"/{body['resourceType']}/{body['id']}", json=body)
            assert put.status_code in (200, 201), put.text
        receiver: Receiver = monitored["receiver"]
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "alerts for the care team",
            "criteria": "Communication?recipient=Practitioner/nurse-1",
            "channel": {
                "type": "rest-hook",
                "endpoint": receiver.url + "/care-team",
                "payload": "application/fhir+json",
            },
        }
        created = care.post("/Subscription", json=subscription)
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 15
        while care.get(f"/Subscription/{created.json()['id']}").json()["status"] != "active":
            assert time.monotonic() < deadline, "the subscription was not activated"
            time.sleep(0.1)

        with client(monitored, token(monitored, DEVICE_SCOPE)) as device:
            single = device.post("/Observation", json=reading(72))
            assert single.status_code == 201, single.text
            refused = device.post("/Observation", json=reading(70, "kg"))
            assert refused.status_code == 422
            issue = refused.json()["issue"][0]
            assert issue["expression"] == ["Observation.valueQuantity.code"]
            assert device.get("/Flag").status_code == 403  # a device reads nothing
            day = [
                reading(80, at="07:00"),
                reading(185, "[lb_av]", "29463-7", at="07:05"),  # stored in kg
                reading(126, at="12:00"),  # above the plan's 110: the alert
                reading(131, at="18:00"),  # still open: no second alert
            ]
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"resource": r, "request": {"method": "POST", "url": "Observation"}}
                    for r in day
                ],
            }
            posted = device.post("", json=bundle)
            assert posted.status_code == 200, posted.text
            assert [e["response"]["status"][:3] for e in posted.json()["entry"]] == ["201"] * 4
            weight_at = posted.json()["entry"][1]["response"]["location"].split("/_history")[0]
            weight = care.get("/" + weight_at.split("/fhir/")[-1]).json()
            assert weight["valueQuantity"]["code"] == "kg"
            assert weight["valueQuantity"]["value"] == pytest.approx(83.91)

            flags, messages = alerts(care)
            assert [f["status"] for f in flags] == ["active"] and len(messages) == 1
            [flag], [message] = flags, messages
            high = posted.json()["entry"][2]["response"]["location"].split("/_history")[0]
            assert message["about"][0]["reference"] == high.split("/fhir/")[-1]
            assert message["about"][1] == {"reference": f"Flag/{flag['id']}"}
            assert (
                "126 /min is above 110 /min (Goal/hr-band)"
                in message["payload"][0]["contentString"]
            )

            [notified] = receiver.wait_for("/care-team/Communication/", 1)
            assert notified.method == "PUT"
            assert notified.json()["id"] == message["id"]  # the alert reached the care team
            assert notified.json()["about"][1] == {"reference": f"Flag/{flag['id']}"}

            again = device.post("/Observation", json=reading(140, at="19:00"))
            assert again.status_code == 201
            assert [len(found) for found in alerts(care)] == [1, 1]  # no spam

            patch = [{"op": "replace", "path": "/status", "value": "inactive"}]
            acknowledged = care.patch(
                f"/Flag/{flag['id']}",
                content=json.dumps(patch),
                headers={"Content-Type": "application/json-patch+json"},
            )
            assert acknowledged.status_code == 200, acknowledged.text

            low = device.post("/Observation", json=reading(44, at="20:00"))
            assert low.status_code == 201
            flags, messages = alerts(care)
            assert sorted(f["status"] for f in flags) == ["active", "inactive"]
            assert len(messages) == 2
            delivered = receiver.wait_for("/care-team/Communication/", 2)
            assert {r.json()["id"] for r in delivered} == {m["id"] for m in messages}
            assert delivered[0].json()["id"] == message["id"]  # in the order they were raised
            time.sleep(1.0)  # nothing more comes: one notification per alert
            assert len(receiver.on("/care-team/Communication/")) == 2
