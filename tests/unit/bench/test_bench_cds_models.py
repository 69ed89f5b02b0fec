"""The CDS model rows of `make bench` (bench/cds_models.py): one row per shipped model."""

from __future__ import annotations

from bench import cds_models


def test_every_shipped_model_gets_an_inference_row_against_the_target(monkeypatch) -> None:
    monkeypatch.setattr(cds_models, "SAMPLES", 50)
    monkeypatch.setattr(cds_models, "WARM_UP", 5)
    rows = cds_models.measure()
    labels = [row.label for row in rows]
    assert labels == [
        "inference, diabetes-progression",
        "inference, breast-cancer-fna-svm",
        "inference, breast-cancer-fna-rf",
        "evaluate (inputs, model, card), diabetes-progression",
    ]
    for row in rows[:3]:
        assert 0 < row.p50_ms <= row.p99_ms
        assert row.target_ms == cds_models.P99_TARGET_MS
        assert row.cells()[-2] == "p99 < 1 ms"
    table = cds_models.render(rows)
    assert table.splitlines()[0].split() == [
        "CDS",
        "model,",
        "one",
        "row",
        "p50",
        "p99",
        "p99",
        "CPU",
        "target",
        "met?",
    ]
