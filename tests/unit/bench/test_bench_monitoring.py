"""The remote-monitoring rows: write latency from the devices, alert latency matched by the
Observation each Communication is about, errors by kind; and the care team's receiver,
which notes when each Communication about a reading arrived."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest

from bench.hook_receiver import HookReceiver, about
from bench.monitoring import Tally, reading, rows


def test_rows_match_alerts_to_their_readings_and_count_errors() -> None:
    tally = Tally(
        latencies=[0.010] * 98 + [0.5, 2.0],
        errors=Counter({"503": 2, "ReadTimeout": 1}),
        committed={"o1": 10.0, "o2": 20.0, "o3": 30.0},  # o3 raised none: its alert was open
        seen={"o1": 10.1, "o2": 20.3, "other": 1.0},
        raised=3,
        server_cpu_s=5.0,
        client_cpu_s=2.5,
    )
    write, alert, cpu = rows(tally, devices=10, duration=10)
    assert write.rate == "10/s" and write.p50_ms == pytest.approx(10.0)
    assert 500 < write.p99_ms <= 2000 and not write.met
    assert write.count == "100 ok, errors 503 x2, ReadTimeout x1"
    assert alert.count == "3 of 3 delivered" and alert.p50_ms == pytest.approx(200.0)
    assert alert.met  # all delivered, both timed ones under the target
    assert cpu.rate == "50.0 / 25.0 ms"


def test_a_reading_is_a_device_heart_rate_in_the_profile_shape() -> None:
    body = reading(7, 150, 0.0)
    assert body["device"] == {"reference": "Device/hr-7"}
    assert body["subject"] == {"reference": "Patient/rpm-7"}
    assert body["effectiveDateTime"] == "1970-01-01T00:00:00Z"
    assert body["valueQuantity"]["code"] == "/min"


def test_an_alert_not_delivered_fails_the_alert_row() -> None:
    tally = Tally(latencies=[0.01], committed={"o1": 10.0}, seen={"o1": 10.1}, raised=2)
    _, alert, _ = rows(tally, devices=1, duration=1)
    assert alert.count == "1 of 2 delivered" and not alert.met


def test_the_receiver_notes_when_each_communication_about_a_reading_arrived() -> None:
    message = {
        "resourceType": "Communication",
        "id": "c1",
        "about": [{"reference": "Observation/o1"}, {"reference": "Flag/f1"}],
    }
    assert about(b"not json") is None and about(b'{"about": []}') is None
    receiver = HookReceiver()
    try:
        with httpx.Client(base_url=receiver.url, timeout=5) as http:
            before = time.monotonic()
            assert http.put("/care-team/Communication/c1", json=message).status_code == 200
            assert http.put("/care-team/Communication/c1", json=message).status_code == 200
            other = {**message, "about": [{"reference": "Observation/o2"}]}
            assert http.put("/care-team/Observation/o2", json=other).status_code == 200
            assert http.post("/care-team").status_code == 200  # an empty notification
            after = time.monotonic()
        seen = receiver.seen()
        assert list(seen) == ["Observation/o1"]  # only Communications, the first arrival
        assert before <= seen["Observation/o1"] <= after  # the clock the bench reads too
        assert receiver.count() == 4
    finally:
        receiver.stop()
