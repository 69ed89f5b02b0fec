"""The print files of an insole (binary STL, 3MF) and a preview image of a design.

The preview is drawn headless with matplotlib's Agg canvas (no display, no pyplot state): one
column per insole, a side view (from the medial side) above a view from below, each face shaded
by how squarely it faces the viewer and painted back to front.
"""

from __future__ import annotations

import io

import numpy as np
import trimesh
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

PREVIEW_FACES = 1_500  # insoles are simplified to this many faces for the picture
COLOUR = np.array([0.20, 0.45, 0.75])


def stl_bytes(mesh: trimesh.Trimesh) -> bytes:
    """Binary STL: an 80-byte header, a face count, then 50 bytes per face."""
    data = mesh.export(file_type="stl")
    assert isinstance(data, bytes)
    return data


def three_mf_bytes(mesh: trimesh.Trimesh) -> bytes:
    """A 3MF package (millimetres) holding the mesh."""
    data = mesh.export(file_type="3mf")
    assert isinstance(data, bytes)
    return data


def preview_png(meshes: list[tuple[str, trimesh.Trimesh]]) -> bytes:
    """Side and bottom views of each (label, mesh), as a PNG."""
    figure = Figure(figsize=(4.0 * len(meshes), 4.0), dpi=100)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.08, right=0.97, bottom=0.08, top=0.93, hspace=0.35, wspace=0.25)
    for column, (label, mesh) in enumerate(meshes):
        shown = mesh
        if len(mesh.faces) > PREVIEW_FACES:
            shown = mesh.simplify_quadric_decimation(face_count=PREVIEW_FACES)
        side = figure.add_subplot(2, len(meshes), column + 1)
        _draw(side, shown, (0, 2), 1, f"{label}: side")
        below = figure.add_subplot(2, len(meshes), len(meshes) + column + 1)
        _draw(below, shown, (0, 1), 2, f"{label}: from below")
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _draw(axes: object, mesh: trimesh.Trimesh, plane: tuple[int, int], depth: int,
          title: str) -> None:  # fmt: skip
    from matplotlib.axes import Axes

    assert isinstance(axes, Axes)
    triangles = np.asarray(mesh.triangles)
    normals = np.asarray(mesh.face_normals)
    # Seen from +y for the side view (the medial side of a right insole), from -z below.
    towards_viewer = normals[:, depth] * (1.0 if depth == 1 else -1.0)
    visible = towards_viewer > 0
    order = np.argsort(triangles[visible][:, :, depth].mean(axis=1) * (1 if depth == 1 else -1))
    polygons = triangles[visible][order][:, :, plane]
    light = 0.35 + 0.65 * towards_viewer[visible][order]
    colours = np.clip(light[:, None] * COLOUR[None, :], 0, 1)
    axes.add_collection(
        PolyCollection(
            list(polygons),
            facecolors=colours,
            edgecolors=colours,
            linewidths=0.3,
            antialiased=False,
        )
    )
    lo, hi = mesh.bounds[0][list(plane)], mesh.bounds[1][list(plane)]
    pad = 5.0
    axes.set_xlim(lo[0] - pad, hi[0] + pad)
    axes.set_ylim(lo[1] - pad, hi[1] + pad)
    axes.set_aspect("equal")
    size = " x ".join(f"{v:.0f}" for v in hi - lo)
    axes.set_title(f"{title} ({size} mm)", fontsize=9)
    axes.set_axis_off()  # the size is in the title; drawing tick labels costs more than the mesh
