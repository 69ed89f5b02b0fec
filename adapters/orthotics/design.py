"""Foot scan or measurements + prescription -> printable insoles: the public geometry API.

Pure functions on plain values: no FHIR, no HTTP, no storage. The FHIR side (the order, the
Binaries, the Device) calls these and maps the results.

    design_from_scan(scans, content_type, rx, limits)   scan mesh(es) -> Design
    design_from_measurements(m, rx, limits)             four measurements -> Design
    check_gates(mesh, process, limits)                  the printability gates of any mesh
    statement_pdf(statement)                            the EU MDR Annex XIII statement

Errors (all ValueError):

    PrescriptionInvalid  a prescription value or a measurement is out of range (.problems,
                     each naming the parameter and its range)
    ScanRejected     the scan cannot be used (.reason, .details): not a mesh, no foot-shaped
                     body, units that are neither mm, cm nor m
    DesignRefused    a design failed a printability gate (.gates: the failed ones); it is not
                     issued

All lengths are millimetres. The foot frame: x from the back of the heel (0) to the toes, z up
with the plantar side down (z = 0 is the ground), y towards the left of the wearer.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import trimesh

from adapters.orthotics import gates, insole, outputs, parameters, scan, synthetic
from adapters.orthotics import statement as _statement
from adapters.orthotics.model import (
    Design,
    DesignRefused,
    FootMeasurements,
    Gate,
    Insole,
    MdrStatement,
    Prescription,
    PrescriptionInvalid,
    PrintLimits,
    ScanRejected,
)
from adapters.orthotics.parameters import Process, Side
from adapters.orthotics.scan import HeightMap

__all__ = [
    "Design",
    "DesignRefused",
    "FootMeasurements",
    "Gate",
    "Insole",
    "MdrStatement",
    "Prescription",
    "PrescriptionInvalid",
    "PrintLimits",
    "Process",
    "ScanRejected",
    "Side",
    "check_gates",
    "design_from_measurements",
    "design_from_scan",
    "load_scan",
    "statement_pdf",
]


MEASURED_SAMPLES = 40_000  # points sampled on the parametric foot for its plantar surface


def load_scan(data: bytes, content_type: str) -> trimesh.Trimesh:
    """Parse a scan (binary or ASCII STL, PLY, OBJ) into one mesh, or raise ScanRejected."""
    return scan.load_scan(data, content_type)


def design_from_scan(
    scans: Mapping[Side, bytes],
    content_type: str,
    rx: Prescription,
    limits: PrintLimits,
) -> Design:
    """Design the prescribed insoles from one scan per side.

    A pair ordered with a single scan mirrors it for the other side (and says so in repairs).
    Raises PrescriptionInvalid for out-of-range values, ScanRejected for an unusable scan and
    DesignRefused when a gate fails.
    """
    _check_prescription(rx)
    surfaces: dict[Side, HeightMap] = {}
    repairs: list[str] = []
    for side in rx.sides:
        if side in scans:
            surfaces[side], notes = _plantar_surface(scans[side], content_type)
            repairs += [f"{side} scan: {note}" for note in notes]
    for side in rx.sides:
        if side not in surfaces:
            other = next(iter(surfaces), None)
            if other is None:
                raise ScanRejected(f"no scan for the {side} foot", {"sides": list(rx.sides)})
            surfaces[side] = surfaces[other]
            repairs.append(f"{side} insole: mirrored from the {other} scan (no {side} scan)")
    return _issue({side: surfaces[side] for side in rx.sides}, rx, limits, repairs)


def design_from_measurements(m: FootMeasurements, rx: Prescription, limits: PrintLimits) -> Design:
    """Design parametric insoles from foot measurements; raises DesignRefused on a failed gate."""
    _check_prescription(rx)
    problems = [
        f"{name} must be between {lo:g} and {hi:g} mm (got {getattr(m, name):g})"
        for name, (lo, hi) in parameters.MEASUREMENT_RANGES.items()
        if not lo <= getattr(m, name) <= hi
    ]
    if problems:
        raise PrescriptionInvalid(tuple(problems))
    foot = synthetic.parametric_foot(
        m.foot_length_mm, m.ball_width_mm, m.heel_width_mm, m.arch_height_mm
    )
    points = trimesh.sample.sample_surface(foot, MEASURED_SAMPLES, seed=0)[0]
    surface, _ = scan.height_map(np.asarray(points))
    return _issue(dict.fromkeys(rx.sides, surface), rx, limits, [])


def check_gates(mesh: trimesh.Trimesh, process: Process, limits: PrintLimits) -> tuple[Gate, ...]:
    """Every printability gate of ``mesh`` for ``process``, passed or not."""
    return gates.check_gates(mesh, process, limits)


def statement_pdf(statement: MdrStatement) -> bytes:
    """The EU MDR Annex XIII custom-made device statement as a PDF."""
    return _statement.statement_pdf(statement)


def _check_prescription(rx: Prescription) -> None:
    problems = list(
        parameters.problems({
            parameters.ARCH_HEIGHT.code: rx.arch_height_mm,
            parameters.HEEL_CUP_DEPTH.code: rx.heel_cup_depth_mm,
            parameters.REARFOOT_POSTING.code: rx.rearfoot_posting_deg,
            parameters.FOREFOOT_POSTING.code: rx.forefoot_posting_deg,
            parameters.SHELL_THICKNESS.code: rx.shell_thickness_mm,
        })
    )  # fmt: skip
    if not rx.sides or len(set(rx.sides)) != len(rx.sides):
        problems.append(f"sides must be left, right or both (got {list(rx.sides)})")
    if rx.forefoot_extension not in parameters.FOREFOOT_EXTENSIONS:
        problems.append(f"unknown forefoot extension {rx.forefoot_extension!r}")
    if rx.process not in parameters.PROCESSES:
        problems.append(f"unknown process {rx.process!r}")
    if problems:
        raise PrescriptionInvalid(tuple(problems))


def _plantar_surface(data: bytes, content_type: str) -> tuple[HeightMap, list[str]]:
    mesh = scan.load_scan(data, content_type)
    foot, floor_normal, notes = scan.isolate_foot(mesh)
    local, frame_notes = scan.foot_frame(foot, floor_normal)
    surface, map_notes = scan.height_map(local)
    return surface, notes + frame_notes + map_notes


def _issue(
    surfaces: Mapping[Side, HeightMap], rx: Prescription, limits: PrintLimits, repairs: list[str]
) -> Design:
    insoles = []
    for side, surface in surfaces.items():
        built = insole.build(surface, rx, side)
        checked = gates.check_gates(built.mesh, rx.process, limits)
        failed = tuple(gate for gate in checked if not gate.passed)
        if failed:
            raise DesignRefused(failed)
        insoles.append((side, built, checked))
    preview = outputs.preview_png([(side, built.mesh) for side, built, _ in insoles])
    return Design(
        insoles=tuple(
            Insole(
                side=side,
                stl=outputs.stl_bytes(built.mesh),
                three_mf=outputs.three_mf_bytes(built.mesh),
                volume_mm3=round(float(built.mesh.volume), 3),
                faces=len(built.mesh.faces),
                dimensions_mm=built.dimensions_mm,
                gates=checked,
            )
            for side, built, checked in insoles
        ),
        repairs=tuple(repairs),
        preview_png=preview,
    )
