"""Parametric feet and synthetic scans of them: the measurements-only design and the test/bench
fixtures (no real scans are needed or shipped).

The foot is the convex hull of spheres at the heel, the metatarsal heads, the toes and the
instep, all resting on z = 0, with an ellipsoid carved out under the medial midfoot for the
arch. It is a right foot in the foot frame (x heel to toes, y to the wearer's left = medial,
z up). `noisy_scan` turns it into what a scanner delivers: denser, noisy, with holes, a patch of
reversed faces, the floor plane, a stray shell, an arbitrary pose and possibly other units.
"""

from __future__ import annotations

from dataclasses import dataclass

import manifold3d
import numpy as np
import trimesh
from numpy.typing import NDArray


def parametric_foot(
    length: float, ball_width: float, heel_width: float, arch_height: float, segments: int = 48
) -> trimesh.Trimesh:
    """A closed right-foot mesh (mm) with the given length, widths and medial arch height."""
    rh, rm, rl = heel_width / 2, 0.17 * ball_width, 0.14 * ball_width
    rt, rs = 0.12 * ball_width, 0.08 * ball_width
    balls = [  # (x, y, radius); every sphere rests on the ground
        (rh, 0.0, rh),
        (0.72 * length, ball_width / 2 - rm, rm),
        (0.64 * length, -ball_width / 2 + rl, rl),
        (length - rt, ball_width / 2 - 1.2 * rt, rt),
        (0.84 * length, -ball_width / 2 + 1.5 * rs, rs),
    ]
    spheres = [manifold3d.Manifold.sphere(r, segments).translate((x, y, r)) for x, y, r in balls]
    instep = manifold3d.Manifold.sphere(0.14 * length, segments).translate(
        (0.4 * length, 0.0, 0.2 * length)
    )
    foot = manifold3d.Manifold.batch_hull([*spheres, instep])
    if arch_height > 0:
        arch = (
            manifold3d.Manifold.sphere(1.0, segments)
            .scale((0.2 * length, 0.32 * ball_width, arch_height))
            .translate((0.44 * length, ball_width / 2, 0.0))
        )
        foot = foot - arch
    return _to_trimesh(foot)


def _to_trimesh(solid: manifold3d.Manifold) -> trimesh.Trimesh:
    mesh = solid.to_mesh()
    return trimesh.Trimesh(
        vertices=np.asarray(mesh.vert_properties)[:, :3], faces=np.asarray(mesh.tri_verts)
    )


@dataclass(frozen=True)
class ScanDefects:
    """What to do to a clean foot to make it look like a raw scan."""

    faces: int = 50_000  # about this many faces on the foot
    noise_mm: float = 0.25
    holes: int = 2
    flipped_patch: bool = True
    floor: bool = True
    extra_shell: bool = True
    scale: float = 1.0  # 0.001: the scanner wrote metres; 0.1: centimetres
    seed: int = 0


def noisy_scan(foot: trimesh.Trimesh, defects: ScanDefects = ScanDefects()) -> trimesh.Trimesh:
    """``foot`` as a scanner might deliver it (see ScanDefects), in an arbitrary pose."""
    rng = np.random.default_rng(defects.seed)
    mesh = _dense(foot, defects.faces)
    vertices = mesh.vertices + rng.normal(0.0, defects.noise_mm, mesh.vertices.shape)
    faces = np.asarray(mesh.faces).copy()
    centroids = vertices[faces].mean(axis=1)
    keep = np.ones(len(faces), dtype=bool)
    extent = foot.extents
    hole_centres = [(0.3, 0.0, 0.0), (0.55, -0.5, 0.15)][: defects.holes]
    for fx, fy, fz in hole_centres:  # one under the foot, one on its lateral side
        centre = np.array([fx * extent[0], fy * extent[1], fz * extent[2]])
        keep &= np.linalg.norm(centroids - centre, axis=1) > 6.0
    if defects.flipped_patch:
        top = np.array([0.5 * extent[0], 0.0, extent[2]])
        flip = np.linalg.norm(centroids - top, axis=1) < 25.0
        faces[flip] = faces[flip][:, ::-1]
    parts = [trimesh.Trimesh(vertices, faces[keep], process=False)]
    if defects.floor:
        lo, hi = foot.bounds
        floor = trimesh.creation.box(extents=(hi[0] - lo[0] + 60, hi[1] - lo[1] + 60, 0.01))
        parts.append(floor.subdivide().subdivide())
        parts[-1].apply_translation(((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, -0.6))
    if defects.extra_shell:
        parts.append(trimesh.creation.icosphere(2, 12.0))
        parts[-1].apply_translation((extent[0] + 40.0, 0.0, 20.0))
    scan = trimesh.util.concatenate(parts)
    assert isinstance(scan, trimesh.Trimesh)
    scan.apply_transform(_random_pose(rng))
    scan.apply_scale(defects.scale)
    return scan


def _dense(mesh: trimesh.Trimesh, faces: int) -> trimesh.Trimesh:
    """Subdivide to at least ``faces``, then simplify back to about that many."""
    vertices, tris = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    while len(tris) < faces:
        vertices, tris = trimesh.remesh.subdivide(vertices, tris)
    dense = trimesh.Trimesh(vertices, tris, process=False)
    if len(tris) > 1.1 * faces:
        dense = dense.simplify_quadric_decimation(face_count=faces)
    return dense


def _random_pose(rng: np.random.Generator) -> NDArray[np.float64]:
    pose: NDArray[np.float64] = trimesh.transformations.random_rotation_matrix(rng.random(3))
    pose[:3, 3] = rng.uniform(-200.0, 200.0, 3)
    return pose
