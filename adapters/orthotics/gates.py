"""Printability gates: each check of a mesh by name, with what was measured and the limit.

Each gate catches what the others let through: an inverted mesh is watertight and consistently
wound but has a negative volume; two overlapping shells pass every local check but are two
bodies; a non-manifold edge (three or more faces on one edge) is caught by name, not only as a
leak. Wall thickness is sampled by casting a ray inwards from points on faces away from sharp
edges, where a ray grazes the neighbouring face and reports a false minimum.
"""

from __future__ import annotations

import numpy as np
import trimesh
from numpy.typing import NDArray

from adapters.orthotics.model import Gate, PrintLimits
from adapters.orthotics.parameters import PROCESSES, Process
from adapters.orthotics.topology import edge_use, face_components, same_direction_edges

DEGENERATE_AREA_MM2 = 1e-6
SHARP_EDGE_DEG = 40.0
THICKNESS_SAMPLES = 600
THICKNESS_PERCENTILE = 5.0
THICKNESS_TOLERANCE_MM = 0.01  # rays are traced in single precision


def check_gates(mesh: trimesh.Trimesh, process: Process, limits: PrintLimits) -> tuple[Gate, ...]:
    """Every gate of ``mesh`` for ``process`` and ``limits``, passed or not."""
    counts = edge_use(mesh)
    open_edges = int(np.sum(counts == 1))
    non_manifold = int(np.sum(counts > 2))
    misoriented = same_direction_edges(mesh)
    volume = float(mesh.volume) if len(mesh.faces) else 0.0
    bodies = len(np.unique(face_components(mesh)))
    degenerate = int(np.sum(mesh.area_faces <= DEGENERATE_AREA_MM2))
    wall = wall_thickness(mesh)
    min_wall = PROCESSES[process].min_wall_mm
    thick_enough = wall >= min_wall - THICKNESS_TOLERANCE_MM
    extents = sorted(float(e) for e in mesh.extents) if len(mesh.faces) else [0.0] * 3
    build = sorted(limits.build_volume_mm)
    fits = all(e <= b for e, b in zip(extents, build, strict=True))
    return (
        Gate("watertight", open_edges == 0, open_edges, 0, "open edges"),
        Gate("consistent-winding", misoriented == 0, misoriented, 0, "misoriented edges"),
        Gate("positive-volume", volume > 0, round(volume, 3), "> 0", "mm3"),
        Gate("single-body", bodies == 1, bodies, 1, "bodies"),
        Gate("no-degenerate-faces", degenerate == 0, degenerate, 0, "faces"),
        Gate("two-manifold", non_manifold == 0, non_manifold, 0, "non-manifold edges"),
        Gate("wall-thickness", thick_enough, round(wall, 3), min_wall, "mm"),
        Gate("build-volume", fits, _dims(extents), _dims(build), "mm"),
        Gate("face-budget", len(mesh.faces) <= limits.max_faces, len(mesh.faces),
             limits.max_faces, "faces"),
    )  # fmt: skip


def _dims(values: list[float]) -> str:
    return " x ".join(f"{v:.1f}" for v in values)


def wall_thickness(mesh: trimesh.Trimesh, samples: int = THICKNESS_SAMPLES) -> float:
    """The 5th-percentile wall thickness (mm), measured by inward rays away from sharp edges.

    Returns 0 when there is nothing to measure or a ray finds no wall to hit.
    """
    if not len(mesh.faces) or mesh.volume <= 0:
        return 0.0
    candidates = _faces_away_from_sharp_edges(mesh)
    if not len(candidates):
        candidates = np.arange(len(mesh.faces))
    rng = np.random.default_rng(0)
    weights = mesh.area_faces[candidates]
    if weights.sum() <= 0:
        return 0.0
    chosen = rng.choice(candidates, size=samples, p=weights / weights.sum())
    bary = rng.dirichlet((4.0, 4.0, 4.0), size=samples)  # keep points off the face borders
    points = np.einsum("ij,ijk->ik", bary, mesh.triangles[chosen])
    normals = mesh.face_normals[chosen]
    depth = trimesh.proximity.thickness(mesh, points, exterior=False, normals=normals, method="ray")
    depth = np.where(np.isfinite(depth), depth, 0.0)
    return float(np.percentile(depth, THICKNESS_PERCENTILE))


def _faces_away_from_sharp_edges(mesh: trimesh.Trimesh) -> NDArray[np.int64]:
    sharp = mesh.face_adjacency_angles > np.radians(SHARP_EDGE_DEG)
    near = np.zeros(len(mesh.vertices), dtype=bool)
    near[mesh.face_adjacency_edges[sharp].ravel()] = True
    touching = near[mesh.faces].any(axis=1)
    return np.flatnonzero(~touching)
