"""Each printability gate is proven by a mesh built to fail it, and the failure names it."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from adapters.orthotics.design import Gate, PrintLimits, check_gates

LIMITS = PrintLimits()


def gate(gates: tuple[Gate, ...], name: str) -> Gate:
    return next(g for g in gates if g.name == name)


def failed(gates: tuple[Gate, ...]) -> set[str]:
    return {g.name for g in gates if not g.passed}


def concatenate(meshes: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    mesh = trimesh.util.concatenate(meshes)
    assert isinstance(mesh, trimesh.Trimesh)
    return mesh


def box(x: float, y: float, z: float) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents=(x, y, z))
    for _ in range(3):  # enough faces away from the corners to sample the walls
        mesh = mesh.subdivide()
    return mesh


def test_a_sound_block_passes_every_gate() -> None:
    gates = check_gates(box(60, 40, 5), "fdm-tpu", LIMITS)
    assert failed(gates) == set()
    assert [g.name for g in gates] == [
        "watertight", "consistent-winding", "positive-volume", "single-body",
        "no-degenerate-faces", "two-manifold", "wall-thickness", "build-volume", "face-budget",
    ]  # fmt: skip
    assert gate(gates, "wall-thickness").measured == pytest.approx(5.0, abs=0.05)


def test_an_inverted_mesh_fails_on_its_volume_only_among_the_topology_gates() -> None:
    mesh = box(60, 40, 5)
    mesh.invert()
    gates = check_gates(mesh, "fdm-tpu", LIMITS)
    volume = gate(gates, "positive-volume")
    assert not volume.passed
    assert isinstance(volume.measured, float) and volume.measured < 0
    assert volume.limit == "> 0"
    assert gate(gates, "watertight").passed and gate(gates, "consistent-winding").passed


def test_overlapping_shells_pass_the_local_checks_but_are_two_bodies() -> None:
    shifted = box(60, 40, 5)
    shifted.apply_translation((20, 10, 2))
    mesh = concatenate([box(60, 40, 5), shifted])
    gates = check_gates(mesh, "fdm-tpu", LIMITS)
    assert failed(gates) == {"single-body"}
    assert gate(gates, "single-body").measured == 2
    assert gate(gates, "single-body").limit == 1


@pytest.mark.parametrize(
    ("thickness", "process", "passes"),
    [(0.6, "fdm-tpu", False), (1.0, "fdm-tpu", False), (1.0, "mjf-tpu", True),
     (1.0, "sls-pa12", True), (0.6, "sls-pa12", False), (1.5, "fdm-tpu", True)],
)  # fmt: skip
def test_wall_thickness_is_held_to_the_process_minimum(
    thickness: float, process: str, passes: bool
) -> None:
    gates = check_gates(box(60, 40, thickness), process, LIMITS)  # type: ignore[arg-type]
    wall = gate(gates, "wall-thickness")
    assert wall.passed is passes
    assert wall.measured == pytest.approx(thickness, abs=0.02)
    assert wall.limit == {"fdm-tpu": 1.2, "mjf-tpu": 1.0, "sls-pa12": 0.8}[process]
    assert wall.unit == "mm"


def test_a_hole_fails_watertight() -> None:
    mesh = box(60, 40, 5)
    mesh.update_faces(np.arange(len(mesh.faces)) > 3)
    gates = check_gates(mesh, "fdm-tpu", LIMITS)
    assert "watertight" in failed(gates)
    assert isinstance(gate(gates, "watertight").measured, int)
    assert gate(gates, "watertight").measured > 0  # type: ignore[operator]


def test_too_large_for_the_build_volume() -> None:
    gates = check_gates(box(350, 100, 20), "sls-pa12", LIMITS)
    assert failed(gates) == {"build-volume"}
    build = gate(gates, "build-volume")
    assert build.measured == "20.0 x 100.0 x 350.0"
    assert build.limit == "300.0 x 300.0 x 300.0"


def test_the_build_volume_allows_turning_the_part_on_the_bed() -> None:
    limits = PrintLimits(build_volume_mm=(100.0, 300.0, 50.0))
    assert gate(check_gates(box(280, 90, 20), "sls-pa12", limits), "build-volume").passed


def test_degenerate_faces_are_counted() -> None:
    mesh = box(60, 40, 5)
    faces = np.vstack([mesh.faces, [[0, 0, 1], [1, 1, 2]]])
    mesh = trimesh.Trimesh(mesh.vertices, faces, process=False)
    gates = check_gates(mesh, "fdm-tpu", LIMITS)
    assert "no-degenerate-faces" in failed(gates)
    assert gate(gates, "no-degenerate-faces").measured == 2


def test_a_non_manifold_edge_is_named() -> None:
    # Two blocks touching along one edge only: four faces meet on that edge.
    a = trimesh.creation.box(extents=(10, 10, 10))
    b = trimesh.creation.box(extents=(10, 10, 10))
    b.apply_translation((10, 10, 0))
    mesh = concatenate([a, b])
    mesh.merge_vertices()
    gates = check_gates(mesh, "fdm-tpu", LIMITS)
    manifold = gate(gates, "two-manifold")
    assert not manifold.passed
    assert manifold.measured == 1
    assert manifold.unit == "non-manifold edges"


def test_a_reversed_patch_fails_consistent_winding() -> None:
    mesh = box(60, 40, 5)
    faces = mesh.faces.copy()
    faces[:10] = faces[:10, ::-1]
    mesh = trimesh.Trimesh(mesh.vertices, faces, process=False)
    gates = check_gates(mesh, "fdm-tpu", LIMITS)
    assert "consistent-winding" in failed(gates)
    assert gate(gates, "consistent-winding").measured > 0  # type: ignore[operator]


def test_the_face_budget() -> None:
    mesh = box(60, 40, 5)
    gates = check_gates(mesh, "fdm-tpu", PrintLimits(max_faces=100))
    assert failed(gates) == {"face-budget"}
    assert gate(gates, "face-budget").measured == len(mesh.faces)
    assert gate(gates, "face-budget").limit == 100


def test_an_empty_mesh_fails_without_crashing() -> None:
    gates = check_gates(trimesh.Trimesh(), "fdm-tpu", LIMITS)
    assert {"positive-volume", "single-body", "wall-thickness"} <= failed(gates)
