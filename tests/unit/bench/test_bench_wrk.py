"""Parsing wrk's output: the JSON line from bench/lua/common.lua, and wrk's own report."""

from __future__ import annotations

import pytest

from bench.ingest import patient_ids
from bench.wrk import WrkOutputError, parse_wrk_output

# Captured from `wrk -t2 -c16 -d2s --latency -s mixed.lua` against the bare app, which
# answers only reads, so the other requests come back 404/405.
MIXED_RUN = """\
Running 2s test @ http://127.0.0.1:45769
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.12ms  704.20us  15.48ms   80.80%
    Req/Sec     3.80k   624.82     5.13k    70.00%
  Latency Distribution
     50%    2.14ms
     75%    2.35ms
     90%    2.67ms
     99%    4.70ms
  15135 requests in 2.00s, 2.39MB read
  Non-2xx or 3xx responses: 4541
Requests/sec:   7561.21
Transfer/sec:      1.19MB
@@BENCH_JSON@@ {"requests": 15135, "duration_us": 2001663, "bytes": 2502948, "errors": \
{"connect": 0, "read": 0, "write": 0, "status": 4541, "timeout": 0}, "latency_us": \
{"min": 390, "mean": 2120.1, "max": 15479, "stdev": 704.2, "p50": 2138, "p75": 2352, \
"p90": 2667, "p99": 4700, "p999": 6650}, "statuses": {"200": 10594, "404": 3040, "405": 1501}}
"""

TEXT_ONLY = """\
Running 10s test @ http://127.0.0.1:8080
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   850.12us  200.00us   1.20s    90.00%
  Latency Distribution
     50%  812.00us
     75%    1.01ms
     90%    1.20ms
     99%    1.05s
  42000 requests in 10.01s, 9.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
Requests/sec:   4195.80
"""


def test_json_line_wins() -> None:
    result = parse_wrk_output(MIXED_RUN)
    assert result.requests == 15135
    assert result.duration_s == pytest.approx(2.001663)
    assert result.throughput == pytest.approx(7561.3, rel=1e-3)
    assert (result.p50_ms, result.p99_ms) == (2.138, 4.7)
    assert result.statuses == {200: 10594, 404: 3040, 405: 1501}
    assert result.errors == 4541
    assert result.error_detail() == "4541 (404×3040, 405×1501)"


def test_text_report_when_the_json_line_is_missing() -> None:
    result = parse_wrk_output(TEXT_ONLY)
    assert result.requests == 42000
    assert result.duration_s == pytest.approx(10.01)
    assert result.p50_ms == pytest.approx(0.812)
    assert result.p99_ms == pytest.approx(1050.0)
    assert result.socket_errors == 5
    assert result.error_detail() == "5 (socket×5)"


def test_a_clean_run_has_no_errors() -> None:
    clean = MIXED_RUN.replace('"status": 4541', '"status": 0').replace(
        ', "404": 3040, "405": 1501', ""
    )
    assert parse_wrk_output(clean).error_detail() == "0"


def test_output_without_results_is_an_error() -> None:
    with pytest.raises(WrkOutputError):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_patient_ids_from_a_transaction_response() -> None:
    body = (
        b'{"resourceType":"Bundle","type":"transaction-response","entry":['
        b'{"response":{"status":"201 Created","location":"Patient/p1/_history/1"}},'
        b'{"response":{"status":"201 Created","location":"Observation/o1/_history/1"}},'
        b'{"response":{"status":"201","location":"http://h/fhir/Patient/p2/_history/1"}}]}'
    )
    assert patient_ids(body) == ["p1", "p2"]
