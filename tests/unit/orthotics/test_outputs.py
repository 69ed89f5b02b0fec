"""The print files reload to the same solid; the preview and the MDR statement are rendered to
tests/output/orthotics/ (to be looked at) and checked to show something."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pypdfium2
import pytest
import trimesh
from PIL import Image

from adapters.orthotics.design import (
    Design,
    FootMeasurements,
    MdrStatement,
    Prescription,
    PrintLimits,
    design_from_scan,
    statement_pdf,
)
from adapters.orthotics.synthetic import ScanDefects, noisy_scan, parametric_foot

OUTPUT = Path(os.environ.get("FHIR_TEST_OUTPUT", Path(__file__).parents[2] / "output"))


@pytest.fixture(scope="module")
def design() -> Design:
    scan = noisy_scan(parametric_foot(258.0, 98.0, 63.0, 17.0), ScanDefects(seed=7))
    rx = Prescription(("left", "right"), 20.0, 15.0, 5.0, -3.0, "sulcus", 2.5, "mjf-tpu")
    data = scan.export(file_type="stl")
    assert isinstance(data, bytes)
    return design_from_scan({"left": data}, "model/stl", rx, PrintLimits())


@pytest.fixture(scope="module")
def out() -> Path:
    path = OUTPUT / "orthotics"
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_binary_stl_is_84_plus_50_bytes_per_face(design: Design) -> None:
    for insole in design.insoles:
        assert len(insole.stl) == 84 + 50 * insole.faces
        assert int.from_bytes(insole.stl[80:84], "little") == insole.faces


def test_stl_and_3mf_reload_to_the_same_volume(design: Design) -> None:
    for insole in design.insoles:
        stl = trimesh.load_mesh(io.BytesIO(insole.stl), file_type="stl")
        three_mf = trimesh.load(io.BytesIO(insole.three_mf), file_type="3mf")
        if isinstance(three_mf, trimesh.Scene):
            three_mf = three_mf.to_mesh()
        assert isinstance(three_mf, trimesh.Trimesh)
        assert stl.volume == pytest.approx(insole.volume_mm3, abs=0.1)
        assert three_mf.volume == pytest.approx(insole.volume_mm3, abs=0.1)
        assert len(three_mf.faces) == insole.faces
        assert insole.three_mf[:2] == b"PK"  # a 3MF is a zip package


def test_the_preview_shows_both_insoles_from_the_side_and_below(design: Design, out: Path) -> None:
    (out / "preview.png").write_bytes(design.preview_png)
    image = np.asarray(Image.open(io.BytesIO(design.preview_png)).convert("RGB")).astype(int)
    height, width, _ = image.shape
    blue = (image[:, :, 2] > image[:, :, 0] + 40) & (image[:, :, 2] > 100)  # the insole colour
    for row in (slice(0, height // 2), slice(height // 2, height)):  # side view, view from below
        for column in (slice(0, width // 2), slice(width // 2, width)):  # left, right insole
            share = blue[row, column].mean()
            assert 0.03 < share < 0.8, share


def statement() -> MdrStatement:
    return MdrStatement(
        patient_code="PT-00417",
        prescriber="Dr Ana Martins, podiatrist",
        manufacturer="Example Orthotics Lab, 12 Harbour Road, 1000 Lisbon, Portugal",
        device_description="Custom foot orthosis (insole pair), MJF TPU",
        design_characteristics={
            "Arch height": "20 mm",
            "Heel cup depth": "15 mm",
            "Rearfoot posting": "5 deg medial",
            "Forefoot posting": "3 deg lateral",
            "Forefoot extension": "To the sulcus",
            "Shell thickness": "2.5 mm",
        },
        serial_numbers=("CFO-2026-0001-L", "CFO-2026-0001-R"),
        date="2026-12-02",
        health_institution="Lisbon Foot Clinic",
        signatory="J. Silva, person responsible for regulatory compliance",
    )


def test_the_statement_pdf_renders_and_says_what_annex_xiii_asks(out: Path) -> None:
    pdf = statement_pdf(statement())
    (out / "statement.pdf").write_bytes(pdf)
    document = pypdfium2.PdfDocument(pdf)
    page = document[0]
    text = page.get_textpage().get_text_range()
    image = page.render(scale=1.5).to_pil().convert("L")
    image.save(out / "statement-page1.png")
    pixels = np.asarray(image)
    assert pixels.std() > 20  # not blank: dark text on white
    assert 0.01 < (pixels < 128).mean() < 0.3
    flat = " ".join(text.split())
    for words in (
        "Statement concerning a custom-made device",
        "Annex XIII",
        "exclusive use of the patient identified by the code PT-00417",
        "conforms to the general safety and performance requirements set out in Annex I",
        "Dr Ana Martins",
        "Example Orthotics Lab",
        "CFO-2026-0001-L, CFO-2026-0001-R",
        "Heel cup depth",
        "does not contain or incorporate a medicinal substance",
        "2026-12-02",
    ):
        assert words in flat, words
    document.close()


def test_requirements_not_met_are_listed_with_their_grounds() -> None:
    base = statement()
    pdf = statement_pdf(
        MdrStatement(
            **{**base.__dict__, "requirements_not_met": ("Annex I 23.2: no label (one patient)",)}
        )
    )
    document = pypdfium2.PdfDocument(pdf)
    flat = " ".join(document[0].get_textpage().get_text_range().split())
    document.close()
    assert "have not been fully met" in flat
    assert "Annex I 23.2: no label (one patient)" in flat


def test_measurements_design_preview_is_written(out: Path) -> None:
    from adapters.orthotics.design import design_from_measurements

    rx = Prescription(("right",), 12.0, 10.0, 0.0, 0.0, "full-length", 2.0, "sls-pa12")
    made = design_from_measurements(FootMeasurements(240.0, 94.0, 60.0, 12.0), rx, PrintLimits())
    (out / "preview-measurements.png").write_bytes(made.preview_png)
    assert made.preview_png.startswith(b"\x89PNG")
