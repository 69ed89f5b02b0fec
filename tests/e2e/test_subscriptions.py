"""Subscriptions end to end: a real server process notifies a loopback HTTP receiver.

R4 criteria subscriptions (one notification per matching write, in order, none for the
others, headers sent), the endpoint allow-list and criteria checks, redirects not
followed, topic-based subscriptions (handshake, event numbers, heartbeat, `$status`,
`$events`) and the websocket binding."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.receiver import Receiver
from tests.support.server import ServerProcess

LOINC = "http://loinc.org"
SECRET = "Bearer s3cr3t-hook-token"
TOPIC = "http://example.org/fhir/SubscriptionTopic/vitals"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hook = Receiver().start()
    yield hook
    hook.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    database = tmp_path_factory.mktemp("subs") / "fhir.db"
    process = ServerProcess(
        database,
        FHIR_WORKERS="1",
        FHIR_SUBSCRIPTION_ALLOWED_HOSTS="127.0.0.1",
        FHIR_SUBSCRIPTION_BACKOFF="0.1",
        FHIR_SUBSCRIPTION_MAX_BACKOFF="0.5",
        FHIR_SUBSCRIPTION_TIMEOUT="2",
        FHIR_SUBSCRIPTION_ERROR_AFTER="3",
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        yield http


def observation(code: str, value: float = 70) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": value, "unit": "/min"},
    }


def r4_subscription(endpoint: str, criteria: str, **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, **channel},
    }


def create(client: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    response = client.post(resource["resourceType"], json=resource)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def wait_status(client: httpx.Client, id: str, status: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"Subscription/{id}").json().get("status") == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"Subscription/{id} did not become {status}")


def test_r4_rest_hook_gets_one_notification_per_matching_write_in_order(
    client: httpx.Client, receiver: Receiver, server: ServerProcess
) -> None:
    sub = create(
        client,
        r4_subscription(
            f"{receiver.url}/r4",
            f"Observation?code={LOINC}|8867-4",
            payload="application/fhir+json",
            header=[f"Authorization: {SECRET}"],
        ),
    )
    wait_status(client, sub["id"], "active")
    written = []
    for n in range(6):
        written.append(create(client, observation("8867-4", 60 + n))["id"])
        create(client, observation("29463-7"))  # another code: no notification
    got = receiver.wait_for("/r4/", 6)
    assert [r.path for r in got] == [f"/r4/Observation/{id}" for id in written]
    assert all(r.method == "PUT" and r.headers["authorization"] == SECRET for r in got)
    assert [r.json()["valueQuantity"]["value"] for r in got] == [60, 61, 62, 63, 64, 65]
    time.sleep(0.6)
    assert len(receiver.on("/r4/")) == 6  # nothing for the non-matching writes, no repeats
    assert SECRET.split()[1] not in server.log.read_text(errors="replace")


def test_empty_payload_is_an_empty_post_and_updates_notify_too(
    client: httpx.Client, receiver: Receiver
) -> None:
    sub = create(client, r4_subscription(f"{receiver.url}/ping", "Patient?family=Ping"))
    wait_status(client, sub["id"], "active")
    patient = create(client, {"resourceType": "Patient", "name": [{"family": "Ping"}]})
    client.put(f"Patient/{patient['id']}", json={**patient, "gender": "female"})
    create(client, {"resourceType": "Patient", "name": [{"family": "Pong"}]})
    got = receiver.wait_for("/ping", 2)
    assert [(r.method, r.path, r.body) for r in got] == [("POST", "/ping", b"")] * 2
    time.sleep(0.5)
    assert len(receiver.on("/ping")) == 2


@pytest.mark.parametrize(
    ("endpoint", "criteria", "status", "said"),
    [
        ("http://example.org/hook", "Observation?code=1", 422, "FHIR_SUBSCRIPTION_ALLOWED_HOSTS"),
        ("ftp://127.0.0.1/hook", "Observation?code=1", 422, "http(s)"),
        ("https://user:pw@example.org/hook", "Observation?code=1", 422, "credentials"),
        ("https://example.org/hook", "Observation?no-such-param=1", 400, "no-such-param"),
        ("https://example.org/hook", "NoSuchType?code=1", 400, "resource type"),
        ("https://example.org/hook", "http://example.org/unknown-topic", 400, "SubscriptionTopic"),
    ],
)
def test_refused_subscriptions(
    client: httpx.Client, endpoint: str, criteria: str, status: int, said: str
) -> None:
    response = client.post("Subscription", json=r4_subscription(endpoint, criteria))
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert said in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize("header", ["Bad Name: x", "NoColon", "X-Split: a\r\nInjected: b"])
def test_malformed_channel_headers_are_refused(client: httpx.Client, header: str) -> None:
    sub = r4_subscription("https://example.org/hook", "Observation?code=1", header=[header])
    response = client.post("Subscription", json=sub)
    assert response.status_code == 400, response.text
    assert "header" in response.json()["issue"][0]["diagnostics"]


def test_https_endpoints_are_accepted_without_the_allow_list(client: httpx.Client) -> None:
    sub = r4_subscription("https://hooks.example.org/fhir", "Observation?code=1")
    assert client.post("Subscription", json={**sub, "status": "off"}).status_code == 201


def test_redirects_are_not_followed(client: httpx.Client, receiver: Receiver) -> None:
    target = Receiver().start()
    try:
        sub = create(client, r4_subscription(f"{receiver.url}/moved", "Patient?family=Moved"))
        wait_status(client, sub["id"], "active")
        receiver.answer(307, Location=f"{target.url}/elsewhere")
        create(client, {"resourceType": "Patient", "name": [{"family": "Moved"}]})
        receiver.wait_for("/moved", 3)  # retried: a redirect is a failure
        assert target.received == []
    finally:
        receiver.answer(200)
        target.stop()
    receiver.wait_for("/moved", 4)


def test_a_slow_endpoint_does_not_hold_up_another_subscription(client: httpx.Client) -> None:
    slow, fast = Receiver().start(), Receiver().start()
    slow.delay = 5.0  # beyond the 2 s timeout: each attempt fails
    subs = []
    try:
        for hook in (slow, fast):
            sub = create(client, r4_subscription(f"{hook.url}/same", "Patient?family=Both"))
            wait_status(client, sub["id"], "active")
            subs.append(sub["id"])
        create(client, {"resourceType": "Patient", "name": [{"family": "Both"}]})
        started = time.monotonic()
        slow.wait_for("/same", 1)
        fast.wait_for("/same", 1, timeout=1.5)  # not after the slow one's timeout
        assert time.monotonic() - started < 1.5
    finally:
        for id in subs:  # no more retries for the rest of the module
            current = client.get(f"Subscription/{id}").json()
            client.put(f"Subscription/{id}", json={**current, "status": "off"})
        slow.delay = 0.0
        slow.stop()
        fast.stop()


def topic(client: httpx.Client) -> None:
    basic = {
        "resourceType": "Basic",
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]
        },
        "extension": [
            {
                "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.url",
                "valueUri": TOPIC,
            },
            {
                "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.resourceTrigger",
                "extension": [{"url": "resource", "valueUri": "Observation"}],
            },
        ],
    }
    create(client, basic)


def topic_subscription(
    endpoint: str, channel_type: str = "rest-hook", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [BACKPORT + "backport-subscription"]},
        "status": "requested",
        "reason": "vitals",
        "criteria": TOPIC,
        "_criteria": {
            "extension": [
                {
                    "url": BACKPORT + "backport-filter-criteria",
                    "valueString": "Observation?code=8310-5",
                }
            ]
        },
        "channel": {
            "type": channel_type,
            **({"endpoint": endpoint} if endpoint else {}),
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {"url": BACKPORT + "backport-payload-content", "valueCode": "full-resource"}
                ]
            },
            **extra,
        },
    }


def status_of(bundle: dict[str, Any]) -> dict[str, Any]:
    first = bundle["entry"][0]["resource"]
    assert first["resourceType"] == "Parameters"
    values: dict[str, Any] = {}
    for p in first["parameter"]:
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        values.setdefault(p["name"], []).append(value if value is not None else p.get("part"))
    return values


def test_topic_based_handshake_events_heartbeat_status_and_events(
    client: httpx.Client, receiver: Receiver
) -> None:
    topic(client)
    heartbeat = {"url": BACKPORT + "backport-heartbeat-period", "valueUnsignedInt": 1}
    sub = create(client, topic_subscription(f"{receiver.url}/topic", extension=[heartbeat]))
    handshake = receiver.wait_for("/topic", 1)[0].json()
    assert handshake["type"] == "history"
    assert status_of(handshake)["type"] == ["handshake"]
    wait_status(client, sub["id"], "active")
    ids = [create(client, observation("8310-5", 36.5 + n / 10))["id"] for n in range(3)]
    create(client, observation("8867-4"))  # outside the filter
    events: list[tuple[int, str]] = []
    deadline = time.monotonic() + 15
    while len(events) < 3 and time.monotonic() < deadline:
        events = [
            (int(_part(e, "event-number")), entry["resource"]["id"])
            for r in receiver.on("/topic")
            if status_of(r.json())["type"] == ["event-notification"]
            for e, entry in zip(
                status_of(r.json())["notification-event"], r.json()["entry"][1:], strict=True
            )
        ]
        time.sleep(0.05)
    assert events == [(1, ids[0]), (2, ids[1]), (3, ids[2])]
    beats = receiver.wait_for(
        "/topic", 1, where=lambda r: status_of(r.json())["type"] == ["heartbeat"]
    )
    assert status_of(beats[0].json())["events-since-subscription-start"] == ["3"]

    found = client.get(f"Subscription/{sub['id']}/$status").json()
    assert found["type"] == "searchset"
    status = status_of({"entry": found["entry"]})
    assert status["type"] == ["query-status"] and status["status"] == ["active"]
    assert status["events-since-subscription-start"] == ["3"]

    replay = client.get(f"Subscription/{sub['id']}/$events?eventsSinceNumber=2").json()
    assert status_of(replay)["type"] == ["query-event"]
    assert [int(_part(e, "event-number")) for e in status_of(replay)["notification-event"]] == [
        2,
        3,
    ]
    assert [e["resource"]["id"] for e in replay["entry"][1:]] == ids[1:]
    window = client.get(
        f"Subscription/{sub['id']}/$events",
        params={"eventsSinceNumber": "1", "eventsUntilNumber": "2", "content": "id-only"},
    ).json()
    assert [int(_part(e, "event-number")) for e in status_of(window)["notification-event"]] == [
        1,
        2,
    ]
    assert [e["fullUrl"].rsplit("/", 1)[1] for e in window["entry"][1:]] == ids[:2]
    assert all("resource" not in e for e in window["entry"][1:])  # id-only
    assert client.get("Subscription/nope/$events").status_code == 404


def _part(parts: list[dict[str, Any]], name: str) -> Any:
    part = next(p for p in parts if p["name"] == name)
    return next(v for k, v in part.items() if k.startswith("value"))


def test_websocket_binding_receives_notifications(
    client: httpx.Client, server: ServerProcess
) -> None:
    topic(client)
    sub = create(client, {**topic_subscription("", "websocket"), "status": "active"})
    answer = client.post(
        f"Subscription/{sub['id']}/$get-ws-binding-token", json={"resourceType": "Parameters"}
    ).json()
    assert answer["resourceType"] == "Parameters", answer
    values = {
        p["name"]: next(v for k, v in p.items() if k.startswith("value"))
        for p in answer["parameter"]
    }
    assert values["websocket-url"] == f"ws://127.0.0.1:{server.port}/subscriptions/websocket"
    with connect(values["websocket-url"]) as ws:
        ws.send("bind-with-token wrong")
        assert "bind" in str(ws.recv(timeout=5))
    with connect(values["websocket-url"]) as ws:
        ws.send(f"bind-with-token {values['token']}")
        handshake = json.loads(ws.recv(timeout=5))
        assert status_of(handshake)["type"] == ["handshake"]
        made = create(client, observation("8310-5", 38.2))
        note = json.loads(ws.recv(timeout=10))
        assert status_of(note)["type"] == ["event-notification"]
        assert note["entry"][1]["resource"]["id"] == made["id"]
    with connect(values["websocket-url"]) as ws:  # a token binds once
        ws.send(f"bind-with-token {values['token']}")
        assert "bind" in str(ws.recv(timeout=5))


def test_websocket_upgrades_elsewhere_are_refused(
    client: httpx.Client, server: ServerProcess
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{server.port}/fhir/Patient")
    assert refused.value.response.status_code == 403
    assert client.get("metadata").status_code == 200


OUTAGE_SECONDS = 30.0


def test_an_outage_and_a_restart_lose_nothing_and_repeat_nothing(server: ServerProcess) -> None:
    """While the receiver is down (30 s) its notifications fail, are retried with back-off
    and the subscription turns `error`; the FHIR server is stopped and started in the
    middle (the events wait in the database's outbox); when the receiver is back every
    event arrives once, in write order, and the subscription is `active` again. (Last in
    the module: it restarts the module's server.)"""
    receiver = Receiver().start()
    try:
        with httpx.Client(base_url=server.base, timeout=30) as client:
            criteria = f"Observation?code={LOINC}|9279-1"
            hook = r4_subscription(f"{receiver.url}/out", criteria, payload="application/fhir+json")
            sub = create(client, hook)["id"]
            wait_status(client, sub, "active")
            ids = [create(client, observation("9279-1"))["id"] for _ in range(2)]
            receiver.wait_for("/out/", 2)

            receiver.stop()
            down = time.monotonic()
            ids += [create(client, observation("9279-1"))["id"] for _ in range(3)]
            wait_status(client, sub, "error")
        server.stop()
        server.start()
        with httpx.Client(base_url=server.base, timeout=30) as client:
            ids += [create(client, observation("9279-1"))["id"] for _ in range(2)]
            assert client.get(f"Subscription/{sub}").json()["status"] == "error"
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down)))
            receiver.start()
            receiver.wait_for("/out/", len(ids), timeout=20)
            wait_status(client, sub, "active")
            time.sleep(0.5)
        assert [r.path for r in receiver.on("/out/")] == [f"/out/Observation/{id}" for id in ids]
    finally:
        receiver.stop()
