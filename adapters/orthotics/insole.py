"""Build the insole under a plantar surface: outline, heel cup, arch, posting, thickness, trim.

The insole is a structured block: a top and a bottom surface sampled on the same grid (stations
along the foot, points across it) joined by walls around the rim, so it is closed, 2-manifold
and consistently wound by construction. Across the grid v runs from the lateral (0) to the
medial (1) edge. The top follows the foot's plantar surface within an envelope around the
prescribed shape (heel cup, arch); posting wedges tilt it; the bottom is flat on the ground
under the heel and the forefoot (the posts) and follows the top one shell thickness below it
under the arch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from numpy.typing import NDArray

from adapters.orthotics.model import Prescription
from adapters.orthotics.parameters import FOREFOOT_EXTENSION_FRACTION, Side
from adapters.orthotics.scan import HeightMap

STATION_MM = 2.5
ACROSS = 31  # points across the insole (v = 0.9, the arch apex, is one of them)
INSET_MM = 3.0  # the insole edge lies this far inside the foot's outline
CONFORM_MM = 2.0  # how far the top may follow the foot beyond the prescribed shape
ARCH_APEX = (0.43, 0.9)  # (fraction of the foot length, v) of the arch's highest point
HEEL_CENTRE = 0.12  # fraction of the foot length


@dataclass(frozen=True)
class Built:
    mesh: trimesh.Trimesh
    dimensions_mm: dict[str, float]


def build(hmap: HeightMap, rx: Prescription, side: Side) -> Built:
    """The insole for ``side`` under the (right-foot) plantar surface ``hmap``."""
    length = hmap.length
    x = _stations(hmap, rx)
    v = np.linspace(0.0, 1.0, ACROSS)
    lo, hi = hmap.outline(x)
    width = np.maximum(hi - lo - 2 * INSET_MM, 1.0)
    xg = np.repeat(x[:, None], ACROSS, axis=1)
    yg = (lo + INSET_MM)[:, None] + v[None, :] * width[:, None]
    vg = np.broadcast_to(v, xg.shape)
    u = xg / length
    plantar = hmap.sample(xg.ravel(), yg.ravel()).reshape(xg.shape)
    cup = _heel_cup(u, vg, x[0] / length)
    arch = np.exp(-(((u - ARCH_APEX[0]) / 0.11) ** 2)) * np.clip((vg - 0.35) / 0.55, 0, 1) ** 1.5
    t = rx.shell_thickness_mm
    shape = rx.heel_cup_depth_mm * cup + max(rx.arch_height_mm - t, 0.0) * arch
    envelope = shape + CONFORM_MM * (1 - arch) * (1 - cup)
    top = np.maximum(np.minimum(plantar, envelope), shape) + t
    wide = width[:, None]
    top += _ramp(u, 0.35, 0.25) * _post(rx.rearfoot_posting_deg, vg, wide)
    top += _ramp(u, 0.55, 0.65) * _post(rx.forefoot_posting_deg, vg, wide)
    under_arch = _ramp(u, 0.28, 0.36) * _ramp(u, 0.6, 0.52)
    bottom = under_arch * np.maximum(top - t, 0.0)
    mesh = _block(xg, yg, top, bottom)
    if side == "left":
        mesh = trimesh.Trimesh(mesh.vertices * [1.0, -1.0, 1.0], mesh.faces[:, ::-1], process=False)
    return Built(mesh, _dimensions(mesh, x, top, bottom, length))


def _stations(hmap: HeightMap, rx: Prescription) -> NDArray[np.float64]:
    length = hmap.length
    probe = np.arange(0.0, length, 0.5)
    lo, hi = hmap.outline(probe)
    wide = probe[hi - lo - 2 * INSET_MM >= 20.0]
    start = float(wide[0])
    end = FOREFOOT_EXTENSION_FRACTION[rx.forefoot_extension] * length
    end = min(end, float(wide[-1]))
    count = max(int(np.ceil((end - start) / STATION_MM)) + 1, 8)
    return np.linspace(start, end, count)


def _ramp(u: NDArray[np.float64], zero: float, one: float) -> NDArray[np.float64]:
    """0 at ``zero``, 1 at ``one`` (either order), smooth in between."""
    s = np.clip((u - zero) / (one - zero), 0.0, 1.0)
    result: NDArray[np.float64] = s * s * (3 - 2 * s)
    return result


def _heel_cup(u: NDArray[np.float64], v: NDArray[np.float64], start: float) -> NDArray[np.float64]:
    """1 at the heel's rim (sides and back), 0 in the middle of the heel and beyond it."""
    sides = np.abs(2 * v - 1) ** 3
    back = np.clip(1 - (u - start) / 0.15, 0.0, 1.0) ** 2
    result: NDArray[np.float64] = np.maximum(sides, back) * _ramp(u, 0.38, 0.2)
    return result


def _post(
    degrees: float, v: NDArray[np.float64], width: NDArray[np.float64]
) -> NDArray[np.float64]:
    """A wedge raising the medial (positive) or lateral (negative) side by ``degrees``."""
    rise = np.tan(np.radians(abs(degrees))) * width
    result: NDArray[np.float64] = rise * (v if degrees > 0 else 1 - v)
    return result


def _block(
    x: NDArray[np.float64], y: NDArray[np.float64], top: NDArray[np.float64],
    bottom: NDArray[np.float64],
) -> trimesh.Trimesh:  # fmt: skip
    n, k = x.shape
    vertices = np.vstack([
        np.column_stack([x.ravel(), y.ravel(), top.ravel()]),
        np.column_stack([x.ravel(), y.ravel(), bottom.ravel()]),
    ])  # fmt: skip
    idx = np.arange(n * k).reshape(n, k)
    a, b = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel()
    c, d = idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    upper = np.concatenate([np.column_stack([a, b, c]), np.column_stack([a, c, d])])
    lower = upper[:, ::-1] + n * k
    rim = np.concatenate([idx[:, 0], idx[-1, 1:], idx[-2::-1, -1], idx[0, -2:0:-1]])
    p, q = rim, np.roll(rim, -1)  # counter-clockwise seen from above, as the top's border
    walls = np.concatenate([
        np.column_stack([q, p, p + n * k]),
        np.column_stack([q, p + n * k, q + n * k]),
    ])  # fmt: skip
    return trimesh.Trimesh(vertices, np.vstack([upper, lower, walls]), process=False)


def _dimensions(
    mesh: trimesh.Trimesh, x: NDArray[np.float64], top: NDArray[np.float64],
    bottom: NDArray[np.float64], length: float,
) -> dict[str, float]:  # fmt: skip
    apex = int(np.argmin(np.abs(x - ARCH_APEX[0] * length))), round(ARCH_APEX[1] * (ACROSS - 1))
    heel = int(np.argmin(np.abs(x - HEEL_CENTRE * length)))
    rims = (top[heel, 0] + top[heel, -1]) / 2
    extents = mesh.extents
    return {
        "length": round(float(extents[0]), 2),
        "width": round(float(extents[1]), 2),
        "height": round(float(extents[2]), 2),
        "min_thickness": round(float((top - bottom).min()), 2),
        "max_thickness": round(float((top - bottom).max()), 2),
        "arch_height": round(float(top[apex]), 2),
        "heel_cup_depth": round(float(rims - top[heel, ACROSS // 2]), 2),
        "foot_length": round(length, 2),
    }
