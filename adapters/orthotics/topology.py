"""Edge and body counts of a triangle mesh, computed on integer keys (fast on large meshes)."""

from __future__ import annotations

import numpy as np
import trimesh
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def _edge_keys(mesh: trimesh.Trimesh, directed: bool) -> NDArray[np.int64]:
    faces = np.asarray(mesh.faces, dtype=np.int64)
    start = faces.ravel()
    end = faces[:, [1, 2, 0]].ravel()
    if not directed:
        start, end = np.minimum(start, end), np.maximum(start, end)
    keys: NDArray[np.int64] = start * len(mesh.vertices) + end
    return keys


def edge_use(mesh: trimesh.Trimesh) -> NDArray[np.int64]:
    """How many faces use each distinct edge (1: open edge, 3 or more: non-manifold)."""
    if not len(mesh.faces):
        return np.zeros(0, dtype=np.int64)
    counts: NDArray[np.int64] = np.unique(_edge_keys(mesh, False), return_counts=True)[1]
    return counts


def same_direction_edges(mesh: trimesh.Trimesh) -> int:
    """Edges that two faces traverse in the same direction (their windings disagree)."""
    if not len(mesh.faces):
        return 0
    counts = np.unique(_edge_keys(mesh, True), return_counts=True)[1]
    return int(np.sum(counts > 1))


def face_components(mesh: trimesh.Trimesh) -> NDArray[np.int64]:
    """A body label per face: faces joined through shared vertices share a label."""
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if not len(faces):
        return np.zeros(0, dtype=np.int64)
    n = len(mesh.vertices)
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    labels: NDArray[np.int64] = connected_components(graph, directed=False)[1]
    return labels[faces[:, 0]]
