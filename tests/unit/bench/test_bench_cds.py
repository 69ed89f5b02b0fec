"""The CDS Hooks bench rows run end to end (few samples): the server answers 200 to every
call, with a fresh JWT each time, in both set-ups."""

from __future__ import annotations

from bench import cds


def test_the_cds_rows_are_measured(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cds, "SAMPLES", 5)
    rows = cds.measure(tmp_path)
    assert [row.label for row in rows] == [
        "patient-view, full prefetch",
        "patient-view, prefetch fetched from our own server",
    ]
    assert all(row.value > 0 for row in rows)
    assert "patient-view, full prefetch" in cds.render(rows)
