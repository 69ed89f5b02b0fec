"""Synthetic scans of parametric feet (several sizes, with noise, holes, a reversed patch, the
floor and a stray shell, in an arbitrary pose) and measurements become printable pairs for every
print process; unusable scans are refused with the reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh

from adapters.orthotics import parameters
from adapters.orthotics.design import (
    Design,
    DesignRefused,
    FootMeasurements,
    Prescription,
    PrescriptionInvalid,
    PrintLimits,
    ScanRejected,
    design_from_measurements,
    design_from_scan,
    load_scan,
)
from adapters.orthotics.scan import split_shells
from adapters.orthotics.synthetic import ScanDefects, noisy_scan, parametric_foot

FEET = {  # foot length, ball width, heel width, arch height (mm)
    "small": (225.0, 88.0, 56.0, 14.0),
    "medium": (262.0, 100.0, 64.0, 18.0),
    "large": (300.0, 112.0, 72.0, 22.0),
}


def rx(process: str = "fdm-tpu", **changes: object) -> Prescription:
    values: dict[str, object] = {
        "sides": ("left", "right"),
        "arch_height_mm": 22.0,
        "heel_cup_depth_mm": 14.0,
        "rearfoot_posting_deg": 4.0,
        "forefoot_posting_deg": -2.0,
        "forefoot_extension": "sulcus",
        "shell_thickness_mm": 3.0,
        "process": process,
    }
    values.update(changes)
    return Prescription(**values)  # type: ignore[arg-type]


def scan_stl(size: str, **defects: object) -> bytes:
    mesh = noisy_scan(parametric_foot(*FEET[size]), ScanDefects(**defects))  # type: ignore[arg-type]
    data = mesh.export(file_type="stl")
    assert isinstance(data, bytes)
    return data


def assert_printable_pair(
    design: Design, prescription: Prescription, foot_length: float, mirror_mm: float = 0.01
) -> None:
    assert design.printable
    assert [i.side for i in design.insoles] == list(prescription.sides)
    fraction = parameters.FOREFOOT_EXTENSION_FRACTION[prescription.forefoot_extension]
    for insole in design.insoles:
        assert all(g.passed for g in insole.gates)
        dims = insole.dimensions_mm
        assert dims["foot_length"] == pytest.approx(foot_length, abs=8.0)
        assert dims["length"] == pytest.approx(fraction * foot_length, abs=12.0)
        assert dims["arch_height"] == pytest.approx(prescription.arch_height_mm, abs=1.0)
        assert dims["heel_cup_depth"] == pytest.approx(prescription.heel_cup_depth_mm, abs=2.5)
        assert dims["min_thickness"] >= prescription.shell_thickness_mm - 0.01
        assert insole.volume_mm3 > 0
    left, right = (trimesh.load_mesh(io.BytesIO(i.stl), file_type="stl") for i in design.insoles)
    # The left insole is the right one mirrored: its medial side (the arch) is at -y.
    assert left.bounds[0][1] == pytest.approx(-right.bounds[1][1], abs=mirror_mm)
    assert left.volume == pytest.approx(right.volume, rel=0.05)


@pytest.mark.parametrize(
    ("size", "process"), [("small", "fdm-tpu"), ("medium", "mjf-tpu"), ("large", "sls-pa12")]
)
def test_a_noisy_scan_gives_a_printable_pair(size: str, process: str) -> None:
    prescription = rx(process)
    design = design_from_scan(
        {"right": scan_stl(size, seed=len(size))}, "model/stl", prescription, PrintLimits()
    )
    assert_printable_pair(design, prescription, FEET[size][0])
    said = "\n".join(design.repairs)
    for words in ("floor plane", "stray shell", "holes", "reversed faces", "mirrored"):
        assert words in said


def test_one_scan_per_side_including_a_mirror_image_scan() -> None:
    right = noisy_scan(parametric_foot(*FEET["medium"]), ScanDefects(seed=3))
    left = noisy_scan(parametric_foot(*FEET["medium"]), ScanDefects(seed=4))
    left.apply_scale((1.0, -1.0, 1.0))  # the left foot is the right one's mirror image
    scans = {"left": left.export(file_type="stl"), "right": right.export(file_type="stl")}
    prescription = rx("mjf-tpu", forefoot_extension="metatarsal-heads")
    design = design_from_scan(scans, "model/stl", prescription, PrintLimits())  # type: ignore[arg-type]
    assert_printable_pair(design, prescription, FEET["medium"][0], mirror_mm=3.0)
    assert not any("mirrored" in r for r in design.repairs)


@pytest.mark.parametrize("process", ["fdm-tpu", "mjf-tpu", "sls-pa12"])
@pytest.mark.parametrize("extension", ["metatarsal-heads", "full-length"])
def test_measurements_only_give_a_printable_pair(process: str, extension: str) -> None:
    prescription = rx(process, forefoot_extension=extension, rearfoot_posting_deg=-6.0)
    m = FootMeasurements(245.0, 96.0, 62.0, 16.0)
    design = design_from_measurements(m, prescription, PrintLimits())
    assert_printable_pair(design, prescription, 245.0)
    assert design.repairs == ()


@pytest.mark.parametrize(("scale", "unit"), [(0.001, "m"), (0.1, "cm")])
def test_scans_in_other_units_are_converted_and_said_so(scale: float, unit: str) -> None:
    prescription = rx(sides=("right",))
    data = scan_stl("medium", scale=scale, faces=20_000)
    design = design_from_scan({"right": data}, "model/stl", prescription, PrintLimits())
    assert design.printable
    assert any(f"the scan is in {unit}" in r for r in design.repairs)
    assert design.insoles[0].dimensions_mm["foot_length"] == pytest.approx(262.0, abs=8.0)


def test_a_scan_in_no_plausible_unit_is_refused() -> None:
    data = scan_stl("medium", scale=0.01, faces=20_000)  # 2.6 units long: neither mm, cm nor m
    with pytest.raises(ScanRejected, match="wrong units") as refused:
        design_from_scan({"right": data}, "model/stl", rx(sides=("right",)), PrintLimits())
    assert refused.value.details["length"] == pytest.approx(2.6, abs=0.3)


def test_no_foot_shaped_body_is_refused() -> None:
    ball = trimesh.creation.icosphere(3, 120.0).export(file_type="stl")
    with pytest.raises(ScanRejected, match="no foot-shaped body"):
        design_from_scan({"right": ball}, "model/stl", rx(), PrintLimits())
    plane = trimesh.creation.box(extents=(300, 200, 0.01)).export(file_type="stl")
    with pytest.raises(ScanRejected, match="no foot-shaped body"):
        design_from_scan({"left": plane}, "model/stl", rx(), PrintLimits())


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (b"solid nothing\nendsolid nothing\n", "model/stl", "no triangles|not a readable"),
        (b"\x00" * 10, "model/stl", "not a readable|no triangles"),
        (b"ply\nformat nonsense\n", "model/ply", "not a readable|no triangles"),
        (b"anything", "image/png", "unsupported scan content type"),
    ],
)
def test_unreadable_scans_are_refused(data: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(ScanRejected, match=reason):
        load_scan(data, content_type)


@pytest.mark.parametrize(
    ("file_type", "content_type"), [("ply", "model/ply"), ("obj", "model/obj")]
)
def test_ply_and_obj_and_ascii_stl_scans_load(file_type: str, content_type: str) -> None:
    foot = parametric_foot(*FEET["small"])
    data = foot.export(file_type=file_type)
    loaded = load_scan(data if isinstance(data, bytes) else data.encode(), content_type)
    assert loaded.volume == pytest.approx(foot.volume, rel=1e-3)
    ascii_stl = foot.export(file_type="stl_ascii")
    assert load_scan(ascii_stl.encode(), "model/stl").volume == pytest.approx(foot.volume, rel=1e-3)


def test_a_design_that_fails_a_gate_is_refused_by_name() -> None:
    small_printer = PrintLimits(build_volume_mm=(150.0, 150.0, 150.0))
    with pytest.raises(DesignRefused) as refused:
        design_from_measurements(FootMeasurements(245.0, 96.0, 62.0, 16.0), rx(), small_printer)
    (gate,) = refused.value.gates
    assert gate.name == "build-volume"
    assert gate.limit == "150.0 x 150.0 x 150.0"
    assert "build-volume" in str(refused.value)


def test_out_of_range_values_are_refused_naming_the_range() -> None:
    with pytest.raises(PrescriptionInvalid) as refused:
        design_from_measurements(
            FootMeasurements(245.0, 96.0, 62.0, 16.0),
            rx(arch_height_mm=40.0, rearfoot_posting_deg=-12.0),
            PrintLimits(),
        )
    assert refused.value.problems == (
        "arch-height must be between 0 and 35 mm (got 40)",
        "rearfoot-posting must be between -10 and 10 deg (got -12)",
    )
    with pytest.raises(PrescriptionInvalid, match="foot_length_mm must be between 150 and 350"):
        design_from_measurements(FootMeasurements(26.0, 96.0, 62.0, 16.0), rx(), PrintLimits())


def test_a_pair_without_any_scan_is_refused() -> None:
    with pytest.raises(ScanRejected, match="no scan for the left foot"):
        design_from_scan({}, "model/stl", rx(), PrintLimits())


def test_the_synthetic_scan_really_has_the_defects() -> None:
    scan = noisy_scan(parametric_foot(*FEET["medium"]), ScanDefects(faces=20_000))
    assert not scan.is_watertight
    assert len(split_shells(scan)) == 3  # foot, floor, stray shell
    assert not np.allclose(scan.bounds[0], 0.0, atol=1.0)  # not in the foot frame


def test_a_dense_scan_is_decimated_first_and_said_so() -> None:
    data = scan_stl("medium", faces=300_000)
    design = design_from_scan({"right": data}, "model/stl", rx(sides=("right",)), PrintLimits())
    assert design.printable
    (note,) = [r for r in design.repairs if "decimated" in r]
    before, after = (int(word) for word in note.split() if word.isdigit())
    assert before > 290_000  # the foot's faces, without the floor and the stray shell
    assert 40_000 < after < 100_000


def test_binary_stl_corners_are_merged_as_trimesh_merges_them() -> None:
    data = scan_stl("small", faces=20_000)
    ours = load_scan(data, "model/stl")
    theirs = trimesh.load_mesh(io.BytesIO(data), file_type="stl")
    assert len(ours.vertices) == len(theirs.vertices)
    assert ours.volume == pytest.approx(theirs.volume, rel=1e-6)
