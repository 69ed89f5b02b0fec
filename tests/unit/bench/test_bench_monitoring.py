"""The remote-monitoring rows: write latency from the devices, alert latency matched by the
Observation each Communication is about, errors by kind."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.monitoring import Tally, reading, rows


def test_rows_match_alerts_to_their_readings_and_count_errors() -> None:
    tally = Tally(
        latencies=[0.010] * 98 + [0.5, 2.0],
        errors=Counter({"503": 2, "ReadTimeout": 1}),
        committed={"o1": 10.0, "o2": 20.0, "o3": 30.0},  # o3 raised none: its alert was open
        seen={"o1": 10.1, "o2": 20.3, "other": 1.0},
        server_cpu_s=5.0,
        client_cpu_s=2.5,
    )
    write, alert, cpu = rows(tally, devices=10, duration=10)
    assert write.rate == "10/s" and write.p50_ms == pytest.approx(10.0)
    assert 500 < write.p99_ms <= 2000 and not write.met
    assert write.count == "100 ok, errors 503 x2, ReadTimeout x1"
    assert alert.count == "2 alerts" and alert.p50_ms == pytest.approx(200.0)
    assert alert.met  # both under the target
    assert cpu.rate == "50.0 / 25.0 ms"


def test_a_reading_is_a_device_heart_rate_in_the_profile_shape() -> None:
    body = reading(7, 150, 0.0)
    assert body["device"] == {"reference": "Device/hr-7"}
    assert body["subject"] == {"reference": "Patient/rpm-7"}
    assert body["effectiveDateTime"] == "1970-01-01T00:00:00Z"
    assert body["valueQuantity"]["code"] == "/min"
