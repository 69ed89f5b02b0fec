"""The orthotics rows of `make bench`: judged on wall time against their targets."""

from __future__ import annotations

from bench.orthotics import CASES, Row, render


def test_rows_are_judged_on_wall_time_and_rendered() -> None:
    fast = Row("design, 50k-face scan", "50,000 faces", 0.4, 0.3, 0.5)
    slow = Row("design, 1M-face scan", "1,000,000 faces", 5.5, 2.9, 5.0)
    assert fast.met and not slow.met
    text = render([fast, slow])
    assert "0.40 s" in text and "<= 5 s" in text and "NO" in text


def test_the_issue_targets_are_the_ones_measured() -> None:
    targets = {faces: target for _, faces, _, target in CASES}
    assert targets[50_000] == 0.5
    assert targets[1_000_000] == 5.0
