"""From raw scan bytes to the plantar surface of one foot, in the foot frame.

Steps (each reported in words when it changed something): parse; decimate a dense scan; split
into shells; drop the floor plane (a flat shell) and stray shells; detect the units from the
foot's length (mm, cm or m; anything else is refused); align to the foot frame (principal axes,
plantar side down, heel at the origin, medial side at +y as for a right foot); sample the
plantar surface as a height map, filling holes from the surrounding surface.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import trimesh
from numpy.typing import NDArray
from scipy import ndimage

from adapters.orthotics.model import ScanRejected
from adapters.orthotics.topology import edge_use, face_components, same_direction_edges

FILE_TYPES = {
    "model/stl": "stl",
    "model/x.stl-binary": "stl",
    "model/x.stl-ascii": "stl",
    "application/sla": "stl",
    "application/vnd.ms-pki.stl": "stl",
    "model/ply": "ply",
    "application/ply": "ply",
    "model/obj": "obj",
    "text/x-obj": "obj",
    "application/x-tgif": "obj",
}
DECIMATE_ABOVE = 120_000  # faces; a denser foot is simplified to about DECIMATE_TO
DECIMATE_TO = 60_000
DECIMATE_SPEED = 10  # fast_simplification's aggression: 10 is its fastest setting
CLUSTER_ABOVE = 250_000  # faces; a denser foot is decimated by vertex clustering
UNITS = (("mm", 1.0, 80.0, 400.0), ("cm", 10.0, 8.0, 40.0), ("m", 1000.0, 0.08, 0.4))
PCA_SAMPLES = 50_000
CELL_MM = 2.0  # height map resolution
PLANTAR_ZONE_MM = 50.0  # only the lowest part of the foot can be under it


@dataclass(frozen=True)
class HeightMap:
    """The plantar surface: height above ground per cell, and the foot's outline per column."""

    heights: NDArray[np.float64]  # (nx, ny), mm above the ground
    y0: float  # y of the first cell's lower edge
    lo: NDArray[np.float64]  # (nx,) outline, lateral edge y per column
    hi: NDArray[np.float64]  # (nx,) outline, medial edge y per column
    length: float  # heel (x = 0) to toe tip, mm

    def sample(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
        """Heights at points (bilinear between cell centres, clamped at the map's edges)."""
        coords = np.stack([x / CELL_MM - 0.5, (y - self.y0) / CELL_MM - 0.5])
        result: NDArray[np.float64] = ndimage.map_coordinates(
            self.heights, coords, order=1, mode="nearest"
        )
        return result

    def outline(self, x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The lateral and medial edge y at each x."""
        centres = (np.arange(len(self.lo)) + 0.5) * CELL_MM
        return np.interp(x, centres, self.lo), np.interp(x, centres, self.hi)


def load_scan(data: bytes, content_type: str) -> trimesh.Trimesh:
    """Parse a scan (binary or ASCII STL, PLY, OBJ) into one mesh, or raise ScanRejected."""
    kind = FILE_TYPES.get(content_type.split(";")[0].strip().lower())
    if kind is None:
        raise ScanRejected(
            f"unsupported scan content type {content_type!r}",
            {"supported": sorted(FILE_TYPES)},
        )
    fast = _binary_stl(data) if kind == "stl" else None
    if fast is not None:
        return fast
    try:
        loaded = trimesh.load_mesh(io.BytesIO(data), file_type=kind)
    except Exception as error:  # each format's parser raises its own errors
        raise ScanRejected(f"the scan is not a readable {kind.upper()} file: {error}") from None
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_mesh()
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ScanRejected("the scan holds no triangles", {"format": kind})
    if not np.all(np.isfinite(loaded.vertices)):
        raise ScanRejected("the scan has vertices that are not finite numbers")
    return loaded


STL_RECORD = np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])
HASH_MULTIPLIERS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], "<u8")


def _binary_stl(data: bytes) -> trimesh.Trimesh | None:
    """A binary STL read straight into arrays, with its shared corners merged exactly.

    Scanners write each shared corner with identical bits, so corners are merged on a hash of
    their bits, checked against the coordinates (a collision falls back to trimesh's merge).
    None when the bytes are not a binary STL (an ASCII one, say).
    """
    if len(data) < 84:
        return None
    count = int.from_bytes(data[80:84], "little")
    if count == 0 or len(data) != 84 + count * STL_RECORD.itemsize:
        return None
    corners = np.frombuffer(data, STL_RECORD, count=count, offset=84)["corners"].reshape(-1, 3)
    if not np.all(np.isfinite(corners)):
        raise ScanRejected("the scan has vertices that are not finite numbers")
    bits = corners.view("<u4").astype("<u8")
    keys = (bits * HASH_MULTIPLIERS).sum(axis=1, dtype="<u8")
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    vertices = corners[first]
    if not np.array_equal(vertices[inverse], corners):
        mesh = trimesh.Trimesh(corners.astype(np.float64), np.arange(len(corners)).reshape(-1, 3))
        return mesh
    return trimesh.Trimesh(vertices.astype(np.float64), inverse.reshape(-1, 3), process=False)


def isolate_foot(
    mesh: trimesh.Trimesh,
) -> tuple[trimesh.Trimesh, NDArray[np.float64] | None, list[str]]:
    """The foot shell in mm, the floor's normal (towards the foot) if a floor was found, and
    what was done to get them."""
    notes: list[str] = []
    shells = split_shells(mesh)
    if not len(shells):
        raise ScanRejected("the scan holds no usable surface")
    flat = [_is_flat(s) for s in shells]
    floors = [s for s, f in zip(shells, flat, strict=True) if f]
    others = [s for s, f in zip(shells, flat, strict=True) if not f]
    if not others:
        raise ScanRejected("no foot-shaped body in the scan: it is flat", {"shells": len(shells)})
    others.sort(key=lambda s: float(np.linalg.norm(np.ptp(s.vertices, axis=0))), reverse=True)
    foot = others[0]
    if floors:
        notes.append(f"removed the floor plane scanned with the foot ({len(floors)} flat shell(s))")
    if len(others) > 1:
        faces = sum(len(s.faces) for s in others[1:])
        notes.append(f"removed {len(others) - 1} stray shell(s) ({faces} faces)")
    floor_normal = None
    if floors:
        floor = max(floors, key=lambda s: float(s.area))
        normal = _principal_axes(floor.vertices)[1][:, 2]
        towards_foot = foot.centroid - floor.centroid
        floor_normal = normal if np.dot(normal, towards_foot) > 0 else -normal
    foot, unit_note = _to_mm(foot)
    if unit_note:
        notes.append(unit_note)
    notes.extend(_defects(foot))
    if len(foot.faces) > DECIMATE_ABOVE:
        before = len(foot.faces)
        foot = _decimate(foot)
        notes.append(f"decimated the foot from {before} to {len(foot.faces)} faces")
    return foot, floor_normal, notes


def _decimate(foot: trimesh.Trimesh) -> trimesh.Trimesh:
    """Quadric decimation to DECIMATE_TO faces; above CLUSTER_ABOVE, where that costs seconds,
    vertex clustering on a grid (one linear pass) instead."""
    if len(foot.faces) > CLUSTER_ABOVE:
        return _cluster_vertices(foot, DECIMATE_TO)
    return foot.simplify_quadric_decimation(face_count=DECIMATE_TO, aggression=DECIMATE_SPEED)


def _cluster_vertices(mesh: trimesh.Trimesh, faces: int) -> trimesh.Trimesh:
    """Merge the vertices in each cell of a grid sized for about ``faces`` faces."""
    vertices = np.asarray(mesh.vertices)
    cell = np.sqrt(0.6 * float(mesh.area) / faces)  # measured: about ``faces`` faces result
    cells = np.floor((vertices - vertices.min(axis=0)) / cell).astype(np.int64)
    size = cells.max(axis=0) + 1
    keys = (cells[:, 0] * size[1] + cells[:, 1]) * size[2] + cells[:, 2]
    _, label = np.unique(keys, return_inverse=True)
    count = np.bincount(label)
    merged = np.column_stack([np.bincount(label, vertices[:, i]) / count for i in range(3)])
    tris = label[np.asarray(mesh.faces)]
    distinct = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
    tris = tris[distinct]
    ordered = np.sort(tris, axis=1)
    n = len(merged)
    _, first = np.unique((ordered[:, 0] * n + ordered[:, 1]) * n + ordered[:, 2], return_index=True)
    return trimesh.Trimesh(merged, tris[np.sort(first)], process=False)


def _is_flat(shell: trimesh.Trimesh) -> bool:
    if len(shell.vertices) < 3:
        return True
    spread = _principal_axes(shell.vertices)[0]
    return bool(spread[2] < 0.02 * spread[0])


def _principal_axes(points: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Extents along the principal axes (largest first) and the axes as columns."""
    centred = points - points.mean(axis=0)
    sample = centred[:: max(1, len(centred) // PCA_SAMPLES)]  # the axes need no more points
    _, vectors = np.linalg.eigh(np.cov(sample.T))
    axes = vectors[:, ::-1]
    projected = centred @ axes
    return projected.max(axis=0) - projected.min(axis=0), axes


def _to_mm(foot: trimesh.Trimesh) -> tuple[trimesh.Trimesh, str]:
    length = float(_principal_axes(foot.vertices)[0][0])
    for unit, scale, lo, hi in UNITS:
        if lo <= length <= hi:
            if scale == 1.0:
                return foot, ""
            foot = foot.copy()
            foot.apply_scale(scale)
            foot.metadata["unit_scale"] = scale
            return foot, f"the scan is in {unit} (foot length {length:g}): converted to mm"
    raise ScanRejected(
        f"wrong units: the foot is {length:g} units long, which is no foot length in mm "
        "(80-400), cm (8-40) or m (0.08-0.4)",
        {"length": length},
    )


def split_shells(mesh: trimesh.Trimesh) -> list[trimesh.Trimesh]:
    """The connected pieces of the surface, each with only its own vertices."""
    labels = face_components(mesh)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    faces = np.asarray(mesh.faces)
    shells = []
    used = np.zeros(len(mesh.vertices), dtype=bool)
    for group in np.split(order, bounds):
        shell_faces = faces[group]
        used[:] = False
        used[shell_faces] = True
        renumber = np.cumsum(used) - 1  # linear, where np.unique would sort
        shells.append(trimesh.Trimesh(mesh.vertices[used], renumber[shell_faces], process=False))
    return shells


def _defects(foot: trimesh.Trimesh) -> list[str]:
    notes = []
    counts = edge_use(foot)
    open_edges = int(np.sum(counts == 1))
    if open_edges:
        notes.append(
            f"the foot surface has holes ({open_edges} open edges): the plantar surface under "
            "them is interpolated from around them"
        )
    flipped = same_direction_edges(foot)
    if flipped:
        notes.append(
            f"the foot surface has reversed faces ({flipped} misoriented edges): ignored, the "
            "design uses surface positions only"
        )
    return notes


def foot_frame(
    foot: trimesh.Trimesh, floor_normal: NDArray[np.float64] | None
) -> tuple[NDArray[np.float64], list[str]]:
    """The foot's surface points in the foot frame (right-foot handedness) and notes."""
    points = np.vstack([foot.vertices, foot.triangles_center])
    spread, axes = _principal_axes(points)
    if not 1.6 * spread[1] <= spread[0] <= 4.5 * spread[1]:  # a foot is 2.3-3 times as long
        raise ScanRejected(
            "no foot-shaped body in the scan (its proportions are not a foot's)",
            {"extents_mm": [round(float(v), 1) for v in spread]},
        )
    down = -floor_normal if floor_normal is not None else _plantar_direction(points, axes)
    x_axis = axes[:, 0] - np.dot(axes[:, 0], down) * down
    x_axis /= np.linalg.norm(x_axis)
    z_axis = -down
    frame = np.stack([x_axis, np.cross(z_axis, x_axis), z_axis])
    local = (points - points.mean(axis=0)) @ frame.T
    if _toes_at_negative_x(local):
        local[:, :2] *= -1.0  # turn half round about the vertical axis
    local -= [local[:, 0].min(), 0.0, np.percentile(local[:, 2], 0.05)]
    return local, []


def _plantar_direction(
    points: NDArray[np.float64], axes: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The sole is the side with the largest flat footprint; refined by the convex hull's
    lowest faces (the plane the foot stands on)."""
    best, best_score = axes[:, 2], -1
    for axis in (axes[:, 1], axes[:, 2]):
        for direction in (axis, -axis):
            depth = points @ direction
            near = points[depth > depth.max() - 4.0]
            flat = near - np.outer(near @ direction, direction)
            cells = np.unique(np.floor(flat / 4.0).astype(np.int64), axis=0)
            if len(cells) > best_score:
                best, best_score = direction, len(cells)
    hull = trimesh.convex.convex_hull(points)
    facing = hull.face_normals @ best > np.cos(np.radians(20.0))
    if facing.any():
        weighted = (hull.face_normals[facing] * hull.area_faces[facing, None]).sum(axis=0)
        best = weighted / np.linalg.norm(weighted)
    return np.asarray(best, dtype=np.float64)


def _toes_at_negative_x(local: NDArray[np.float64]) -> bool:
    """The forefoot is wider than the heel."""
    x = local[:, 0]
    low = local[:, 2] < np.percentile(local[:, 2], 30)
    span = x.max() - x.min()

    def width(mask: NDArray[np.bool_]) -> float:
        y = local[mask & low, 1]
        return float(y.max() - y.min()) if len(y) else 0.0

    back = width(x < x.min() + 0.25 * span)
    front = width(x > x.max() - 0.35 * span)
    return back > front


def height_map(local: NDArray[np.float64]) -> tuple[HeightMap, list[str]]:
    """Sample the plantar surface; put the medial side (the arch) at +y."""
    notes: list[str] = []
    hmap, filled = _raster(local)
    if _medial_at_negative_y(hmap):
        local = local * [1.0, -1.0, 1.0]
        hmap, filled = _raster(local)
    if filled:
        notes.append(
            f"interpolated {filled * CELL_MM**2:g} mm2 of plantar surface missing from the scan"
        )
    return hmap, notes


def _raster(local: NDArray[np.float64]) -> tuple[HeightMap, int]:
    x, y, z = local.T
    y0 = float(y.min())
    ix = np.minimum((x / CELL_MM).astype(np.int64), int(x.max() / CELL_MM))
    iy = ((y - y0) / CELL_MM).astype(np.int64)
    nx, ny = int(ix.max()) + 1, int(iy.max()) + 1
    lo = np.full(nx, np.inf)
    hi = np.full(nx, -np.inf)
    np.minimum.at(lo, ix, y)
    np.maximum.at(hi, ix, y)
    lo, hi = _fill_columns(lo), _fill_columns(hi)
    low = z < PLANTAR_ZONE_MM
    heights = np.full((nx, ny), np.inf)
    np.minimum.at(heights, (ix[low], iy[low]), z[low])
    centres_y = y0 + (np.arange(ny) + 0.5) * CELL_MM
    inside = (centres_y[None, :] >= lo[:, None]) & (centres_y[None, :] <= hi[:, None])
    known = np.isfinite(heights)
    heights = _fill(heights, known)
    outliers = heights - ndimage.median_filter(heights, size=7) > 4.0
    known &= ~outliers
    heights = ndimage.gaussian_filter(_fill(heights, known), 0.8)
    heights -= np.percentile(heights[inside], 1.0)
    filled = int(np.sum(inside & ~known))
    smooth = 2
    lo = ndimage.uniform_filter1d(lo, 2 * smooth + 1, mode="nearest")
    hi = ndimage.uniform_filter1d(hi, 2 * smooth + 1, mode="nearest")
    return HeightMap(np.maximum(heights, 0.0), y0, lo, hi, float(x.max())), filled


def _fill_columns(values: NDArray[np.float64]) -> NDArray[np.float64]:
    known = np.isfinite(values)
    idx = np.arange(len(values))
    return np.interp(idx, idx[known], values[known])


def _fill(values: NDArray[np.float64], known: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Each unknown cell takes the value of the nearest known cell."""
    nearest = ndimage.distance_transform_edt(~known, return_distances=False, return_indices=True)
    filled: NDArray[np.float64] = values[tuple(nearest)]
    return filled


def _medial_at_negative_y(hmap: HeightMap) -> bool:
    """The arch lifts the medial midfoot off the ground."""
    n = len(hmap.lo)
    mid = slice(int(0.35 * n), int(0.55 * n))
    ys = hmap.y0 + (np.arange(hmap.heights.shape[1]) + 0.5) * CELL_MM
    centre = ((hmap.lo + hmap.hi) / 2)[mid, None]
    half = ((hmap.hi - hmap.lo) / 2)[mid, None]
    rows = hmap.heights[mid]
    plus = rows[(ys > centre) & (ys < centre + 0.8 * half)]
    minus = rows[(ys < centre) & (ys > centre - 0.8 * half)]
    return bool(minus.mean() > plus.mean()) if len(plus) and len(minus) else False
