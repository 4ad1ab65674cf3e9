"""Anatomy of the VISCERAL-like CT phantom: a torso from the neck to the pelvis, in millimetres.

Atlas frame: RAS (+x patient right, +y anterior, +z superior), origin at the centre of the first
lumbar vertebra's body on the body's left-right midline. Every shape is an analytic function of
atlas coordinates (ellipsoids, elliptic cylinders, tubes along polylines), so the anatomy depends
on the random draws only, not on the voxel grid it is sampled on.

Small structures are enlarged (adrenal glands about 12 mm thick, thyroid lobes 18 mm wide) so
that they keep tens of voxels at the default 3-3.5 mm in-plane spacing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

# Tissue classes of the image and their mean Hounsfield units; None: drawn per case in _render.
TISSUES: dict[str, float | None] = {
    "air": -1000.0,
    "fat": -100.0,
    "muscle": 50.0,
    "lung": -850.0,
    "blood": None,  # arterial: aorta, heart chambers, 150..300
    "vein": None,  # IVC, enhanced less than the arteries
    "myocardium": 110.0,
    "liver": None,  # 60..110, follows the enhancement
    "spleen": None,
    "pancreas": None,
    "kidney_cortex": None,  # 150..220
    "kidney_medulla": None,
    "adrenal": 45.0,
    "bile": 10.0,
    "urine": 8.0,
    "bladder_wall": 40.0,
    "bowel": 35.0,
    "stomach": 20.0,
    "esophagus": 40.0,
    "cortical_bone": None,  # 700..1000
    "marrow": None,  # 200..300
    "thin_bone": 550.0,  # ribs, vertebral arches: cortex and marrow under one voxel
    "disc": 85.0,
    "csf": 10.0,
    "thyroid": None,  # 100..160, iodine
    "trachea_wall": 50.0,
}
T = {name: i for i, name in enumerate(TISSUES)}

# Body outline by height: z knots (mm), semi-axes (x, y) and the outline's centre y.
_OUTLINE_Z = (-320.0, -230.0, -150.0, -60.0, 40.0, 120.0, 200.0, 270.0, 305.0, 335.0, 440.0)
_OUTLINE_AX = (150.0, 160.0, 152.0, 145.0, 142.0, 150.0, 155.0, 150.0, 120.0, 62.0, 58.0)
_OUTLINE_AY = (95.0, 100.0, 100.0, 104.0, 104.0, 108.0, 110.0, 100.0, 88.0, 55.0, 52.0)
_OUTLINE_CY = (5.0, 5.0, 5.0, 5.0, 0.0, 0.0, 0.0, -5.0, -10.0, -15.0, -15.0)
# Spine centre line (vertebral body centre y) and body semi-axes by height.
_SPINE_Z = (-330.0, -160.0, -60.0, 0.0, 100.0, 200.0, 280.0, 335.0, 440.0)
_SPINE_Y = (-35.0, -45.0, -50.0, -55.0, -65.0, -70.0, -62.0, -42.0, -38.0)
_BODY_Z = (-160.0, 0.0, 150.0, 330.0, 440.0)
_BODY_AX = (25.0, 23.0, 17.0, 12.0, 11.0)
_BODY_AY = (18.0, 17.0, 14.0, 9.0, 9.0)
# Disc centres between vertebrae, bottom (L5/S1) to top; L1 spans the two around z = 0.
_DISCS = np.array(
    [-157.5, -122.5, -87.5, -52.5, -17.5, 17.5]
    + [17.5 + 26.0 * k for k in range(1, 13)]
    + [329.5 + 18.0 * k for k in range(1, 7)],
    dtype=np.float32,
)
_L1_RANGE = (-17.5, 17.5)

#: Atlas z range the scans cover (pelvis floor to lower neck) and the in-plane FOV centre.
Z_RANGE = (-290.0, 400.0)
FOV_CENTRE = (0.0, 0.0, 0.5 * (Z_RANGE[0] + Z_RANGE[1]))


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation (degrees) about z (yaw), then x (pitch), then y (roll); local -> atlas."""
    a, b, c = (math.radians(v) for v in (yaw, pitch, roll))
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    ry = np.array([[math.cos(c), 0, math.sin(c)], [0, 1, 0], [-math.sin(c), 0, math.cos(c)]])
    return rz @ rx @ ry


class Shapes:
    """Boolean masks of analytic shapes over points ``coords`` ``(3, N)`` (atlas mm).

    Each shape is evaluated only on the points inside its bounding box, which keeps small
    structures cheap on large grids.
    """

    def __init__(self, coords: np.ndarray) -> None:
        self.p = coords
        self.n = coords.shape[1]

    def box(self, lo: npt.ArrayLike, hi: npt.ArrayLike) -> np.ndarray:
        """Indices of the points inside the axis-aligned box ``lo..hi``."""
        x, y, z = self.p
        lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
        inside = (z > lo[2]) & (z < hi[2])
        inside &= (x > lo[0]) & (x < hi[0])
        inside &= (y > lo[1]) & (y < hi[1])
        return np.flatnonzero(inside)

    def _full(self, index: np.ndarray, keep: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n, bool)
        out[index[keep]] = True
        return out

    def ellipsoid(
        self,
        centre: npt.ArrayLike,
        axes: npt.ArrayLike,
        rot: np.ndarray | None = None,
        shrink: float = 0.0,
    ) -> np.ndarray:
        """Inside an ellipsoid (semi-axes ``axes`` in its local frame, minus ``shrink`` mm)."""
        c = np.asarray(centre, np.float32)
        a = np.maximum(np.asarray(axes, np.float32) - np.float32(shrink), np.float32(0.1))
        r = float(a.max())
        index = self.box(c - r, c + r)
        local = self.p[:, index] - c[:, None]
        if rot is not None:
            local = rot.T.astype(np.float32) @ local
        q = ((local / a[:, None]) ** 2).sum(0)
        return self._full(index, q <= 1.0)

    def tube(self, points: npt.ArrayLike, radii: npt.ArrayLike, shrink: float = 0.0) -> np.ndarray:
        """Within ``radius - shrink`` of a polyline; the radius varies linearly along segments."""
        pts = np.asarray(points, np.float32)
        rad = np.asarray(radii, np.float32) - np.float32(shrink)
        r = float(rad.max())
        index = self.box(pts.min(0) - r, pts.max(0) + r)
        local = self.p[:, index]
        depth = np.full(index.size, -np.inf, np.float32)
        for p0, p1, r0, r1 in zip(pts[:-1], pts[1:], rad[:-1], rad[1:], strict=True):
            d = p1 - p0
            rel = local - p0[:, None]
            t = np.clip((d @ rel) / np.float32(d @ d), 0.0, 1.0)
            dist = np.sqrt(((rel - d[:, None] * t) ** 2).sum(0))
            np.maximum(depth, r0 + (r1 - r0) * t - dist, out=depth)
        return self._full(index, depth >= 0)

    def cylinder(
        self,
        centre_xy: Sequence[float],
        axes_xy: Sequence[float],
        z_range: Sequence[float],
    ) -> np.ndarray:
        """Inside a vertical elliptic cylinder."""
        cx, cy = centre_xy
        ax, ay = axes_xy
        index = self.box((cx - ax, cy - ay, z_range[0]), (cx + ax, cy + ay, z_range[1]))
        x, y = self.p[0, index], self.p[1, index]
        return self._full(index, ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0)


def paint_torso(
    coords: np.ndarray, rng: np.random.Generator, labels: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Tissue classes (:data:`T`) and organ labels (values of ``labels``) at atlas points.

    Args:
        coords: ``(3, N)`` float32 atlas coordinates (mm).
        rng: draws a fixed number of values, whatever ``N``.
        labels: organ name -> label value for every organ of ``segattn.data.visceral``.

    Returns:
        ``(tissue, label)``, uint8 arrays of ``N``; labelled organs do not overlap.
    """
    x, y, z = coords
    n = x.size
    tissue = np.zeros(n, np.uint8)
    label = np.zeros(n, np.uint8)
    s = Shapes(coords)

    def paint(mask: np.ndarray, tissue_name: str, organ: str | None = None) -> None:
        tissue[mask] = T[tissue_name]
        label[mask] = labels[organ] if organ else 0

    # Random anatomy, drawn in a fixed order.
    fat_mm = rng.uniform(10.0, 32.0)  # subcutaneous fat at the waist
    breath = rng.uniform(-12.0, 12.0)  # diaphragm and upper abdominal organs move together
    jitter = rng.normal(0.0, 4.0, (20, 3)).astype(np.float32)  # organ centres
    scale = (1.0 + 0.07 * rng.standard_normal((20, 3))).astype(np.float32)  # organ sizes
    bladder_fill = rng.uniform(0.7, 1.25)
    aorta_r = rng.uniform(10.5, 13.5)
    wave_dirs = rng.standard_normal((6, 3))
    wave_lengths = rng.uniform(35.0, 75.0, 6)
    wave_phases = rng.uniform(0.0, 2 * np.pi, 6)

    def at(k: int, centre: Sequence[float], dz: float = 0.0) -> np.ndarray:
        return np.asarray(centre, np.float32) + jitter[k] + np.array([0.0, 0.0, dz], np.float32)

    def size(k: int, axes: Sequence[float]) -> np.ndarray:
        return np.asarray(axes, np.float32) * scale[k]

    # Body outline and wall: subcutaneous fat (thinner at the neck), a muscle layer, interior.
    ax = np.interp(z, _OUTLINE_Z, _OUTLINE_AX).astype(np.float32)
    ay = np.interp(z, _OUTLINE_Z, _OUTLINE_AY).astype(np.float32)
    cy = np.interp(z, _OUTLINE_Z, _OUTLINE_CY).astype(np.float32)
    dy = y - cy
    r = np.sqrt(x * x + dy * dy)
    rho = np.maximum(np.sqrt((x / ax) ** 2 + (dy / ay) ** 2), np.float32(1e-6))
    depth = r / rho - r  # mm below the skin along the ray from the outline's centre
    front = cy + ay
    del ax, ay, cy, dy, r, rho
    fat = np.float32(fat_mm) * np.interp(z, (290.0, 340.0), (1.0, 0.3)).astype(np.float32)
    wall = fat + np.float32(12.0)
    paint(depth >= 0, "fat")
    paint((depth >= fat) & (depth < wall), "muscle")
    interior = depth >= wall
    ys = np.interp(z, _SPINE_Z, _SPINE_Y).astype(np.float32)

    # Diaphragm: two domes, lower at the back (costophrenic recesses).
    dome = 95.0 + breath + 30.0 * np.exp(-(((x - 55.0) / 75.0) ** 2))
    dome += 22.0 * np.exp(-(((x + 60.0) / 70.0) ** 2)) - 0.35 * np.maximum(-(y + 20.0), 0.0)
    abdomen = interior & (z <= dome)

    # Bowel loops where a smooth random field is high, gas where it peaks.
    field = np.zeros(n, np.float32)
    for d, w, ph in zip(wave_dirs, wave_lengths, wave_phases, strict=True):
        k = (d / np.linalg.norm(d) * 2 * np.pi / w).astype(np.float32)
        field += np.sin(k[0] * x + k[1] * y + k[2] * z + np.float32(ph))
    gut = abdomen & (z > -215.0) & (z < 40.0) & (y > -20.0)
    paint(gut & (field > -0.3), "bowel")
    paint(gut & (field > 2.2), "air")
    del field, gut

    # Thorax: lungs, the muscles behind them, heart, mediastinum, oesophagus, bronchi, ribs.
    lung_space = interior & (depth >= wall + 1.0) & (z > dome + 3.0)
    for k, (organ, side) in enumerate((("right_lung", 1.0), ("left_lung", -1.0))):
        lung = s.ellipsoid(at(k, (side * 76.0, -8.0, 180.0)), size(k, (72.0, 92.0, 150.0)))
        paint(lung & lung_space & (side * x > 14.0), "lung", organ)
    del lung_space
    for side in (1.0, -1.0):  # paraspinal muscles
        erector = s.cylinder((side * 38.0, -100.0), (26.0, 60.0), (-240.0, 340.0))
        paint(erector & (y < ys - 8.0) & (depth >= fat), "muscle")
    heart, heart_rot = at(2, (-22.0, 22.0, 152.0), breath / 2), rotation(yaw=-30.0, pitch=-20.0)
    heart_axes = size(2, (62.0, 48.0, 55.0))
    paint(s.ellipsoid(heart, heart_axes, heart_rot), "myocardium")
    paint(s.ellipsoid(heart, heart_axes, heart_rot, shrink=10.0), "blood")
    mediastinum = s.cylinder((0.0, -8.0), (28.0, 40.0), (150.0, 330.0)) & interior
    paint(mediastinum & (z > dome), "fat")
    del mediastinum
    gullet = [(0.0, -22.0, 400.0), (-4.0, -30.0, 160.0), (-20.0, 5.0, 70.0)]
    paint(s.tube(gullet, [8.0, 8.0, 8.0]), "esophagus")
    for side in (1.0, -1.0):
        bronchus = [(0.0, -2.0, 252.0), (side * 48.0, -14.0, 212.0)]
        paint(s.tube(bronchus, [8.0, 6.0]), "trachea_wall")
        paint(s.tube(bronchus, [8.0, 6.0], shrink=2.0), "air")
    band = (depth >= fat + 2.0) & (depth < wall) & (z > 40.0) & (z < 300.0)
    rib_phase = (z + 0.45 * (y - ys)) / 26.0
    ribs = band & (rib_phase - np.floor(rib_phase) < 0.38)
    paint(ribs & ((np.abs(x) > 30.0) | (y < ys)) & (np.abs(x) > 12.0), "thin_bone")
    del band, rib_phase, ribs

    # Upper abdomen.
    stomach = s.ellipsoid(at(3, (-48.0, 22.0, 68.0), breath), size(3, (42.0, 38.0, 48.0)))
    paint(stomach & abdomen, "stomach")
    paint(s.ellipsoid(at(3, (-48.0, 50.0, 80.0), breath), (30.0, 14.0, 22.0)) & abdomen, "air")
    liver = s.ellipsoid(at(4, (68.0, 5.0, 62.0), breath), size(4, (76.0, 86.0, 76.0)))
    liver |= s.ellipsoid(at(5, (2.0, 38.0, 82.0), breath), size(5, (66.0, 42.0, 36.0)))
    paint(liver & abdomen, "liver", "liver")
    bladder_rot = rotation(pitch=35.0)
    gallbladder = s.ellipsoid(
        at(6, (46.0, 42.0, 2.0), breath), size(6, (16.0, 18.0, 34.0)), bladder_rot
    )
    paint(gallbladder & abdomen, "bile", "gallbladder")
    spleen = s.ellipsoid(
        at(7, (-88.0, -38.0, 66.0), breath), size(7, (28.0, 52.0, 55.0)), rotation(yaw=35.0)
    )
    paint(spleen & abdomen, "spleen", "spleen")
    del stomach, liver, gallbladder, spleen
    pancreas = [(26.0, -2.0, 2.0), (2.0, 4.0, 14.0), (-36.0, -8.0, 26.0), (-72.0, -26.0, 42.0)]
    pancreas_line = [tuple(at(8, p, breath / 2)) for p in pancreas]
    paint(s.tube(pancreas_line, [15.0, 11.0, 11.0, 9.0]) & abdomen, "pancreas", "pancreas")

    # Retroperitoneum: kidneys, adrenal glands, psoas muscles, aorta and vena cava.
    psoas = [(27.0, -48.0, 22.0), (40.0, -46.0, -40.0), (56.0, -40.0, -120.0),
             (72.0, -28.0, -185.0), (82.0, -8.0, -235.0)]  # fmt: skip
    for k, side in enumerate((1.0, -1.0)):
        sided = "right" if side > 0 else "left"
        psoas_line = [tuple(at(13 + k, (side * px, py, pz))) for px, py, pz in psoas]
        paint(s.tube(psoas_line, [8.0, 16.0, 22.0, 20.0, 15.0]), "muscle", f"{sided}_psoas_major")
    for k, (side, z0) in enumerate(((1.0, -28.0), (-1.0, -6.0))):
        sided = "right" if side > 0 else "left"
        centre = at(9 + k, (side * 78.0, -44.0, z0), breath / 2)
        axes, rot = size(9 + k, (27.0, 22.0, 54.0)), rotation(yaw=side * 25.0, roll=side * 12.0)
        paint(s.ellipsoid(centre, axes, rot), "kidney_cortex", f"{sided}_kidney")
        paint(s.ellipsoid(centre, axes, rot, shrink=8.0), "kidney_medulla", f"{sided}_kidney")
        gland = at(11 + k, (side * 46.0, -36.0, z0 + 70.0), breath / 2)
        adrenal = s.ellipsoid(gland, size(11 + k, (6.0, 16.0, 22.0)), rotation(yaw=side * 35.0))
        paint(adrenal, "adrenal", f"{sided}_adrenal_gland")
    aorta = [(-4.0, 26.0, 160.0), (0.0, 26.0, 226.0), (-6.0, 4.0, 262.0), (-22.0, -30.0, 250.0),
             (-26.0, -40.0, 200.0), (-18.0, -32.0, 100.0), (-14.0, -20.0, 0.0),
             (-6.0, -16.0, -100.0), (-4.0, -14.0, -135.0)]  # fmt: skip
    radii = [aorta_r + 2.5, aorta_r + 2.5, aorta_r + 1.5] + [aorta_r] * 4 + [aorta_r - 1.0] * 2
    paint(s.tube(aorta, radii), "blood", "aorta")
    cava = [(22.0, -14.0, -140.0), (24.0, -16.0, 60.0), (12.0, 0.0, 140.0)]
    paint(s.tube(cava, [11.0, 12.0, 14.0]), "vein")

    # Spine: vertebral bodies (cortex around marrow) between discs, canal, arches; pelvis.
    _paint_spine(coords, ys, paint)
    sacrum = at(15, (0.0, -60.0, -205.0))
    paint(s.ellipsoid(sacrum, (48.0, 22.0, 50.0), rotation(pitch=-30.0)), "cortical_bone")
    paint(s.ellipsoid(sacrum, (48.0, 22.0, 50.0), rotation(pitch=-30.0), shrink=4.0), "marrow")
    for side in (1.0, -1.0):  # iliac wings
        wing, wing_rot = at(16, (side * 100.0, -30.0, -175.0)), rotation(yaw=side * 40.0)
        paint(s.ellipsoid(wing, (14.0, 48.0, 52.0), wing_rot) & interior, "cortical_bone")
        paint(s.ellipsoid(wing, (14.0, 48.0, 52.0), wing_rot, shrink=4.0) & interior, "marrow")

    # Anterior wall: sternum and rectus abdominis; pelvis: bladder; neck: thyroid, trachea.
    sx, sy, top = jitter[17, 0], front - fat - 10.0, 305.0 + jitter[17, 2]
    half_width = np.where(z > top - 45.0, 26.0, 17.0).astype(np.float32)
    sternum = (np.abs(x - sx) < half_width) & (np.abs(y - sy) < 7.5)
    sternum &= (z < top) & (z > 150.0 + breath)
    inner = (np.abs(x - sx) < half_width - 2.5) & (np.abs(y - sy) < 5.0)
    inner &= (z < top - 2.5) & (z > 152.5 + breath)
    paint(sternum, "cortical_bone", "sternum")
    paint(inner, "marrow", "sternum")
    del sternum, inner, half_width, sy
    rectus = (depth >= fat) & (depth < wall) & (y > front - 60.0)
    rectus &= (z < 115.0 + breath) & (z > -250.0) & (np.abs(x) > 5.0) & (np.abs(x) < 72.0)
    paint(rectus & (x > 0), "muscle", "right_rectus_abdominis")
    paint(rectus & (x < 0), "muscle", "left_rectus_abdominis")
    del rectus, front, depth, fat, wall
    bladder = at(18, (0.0, 32.0, -228.0))
    bladder_axes = size(18, (46.0, 34.0, 34.0)) * np.float32(bladder_fill)
    paint(s.ellipsoid(bladder, bladder_axes) & interior, "bladder_wall", "urinary_bladder")
    paint(s.ellipsoid(bladder, bladder_axes, shrink=3.0) & interior, "urine", "urinary_bladder")
    for side in (1.0, -1.0):
        lobe, lobe_axes = at(19, (side * 21.0, 12.0, 345.0)), size(19, (9.0, 11.0, 24.0))
        paint(s.ellipsoid(lobe, lobe_axes, rotation(pitch=15.0)), "thyroid", "thyroid_gland")
    paint(s.ellipsoid(at(19, (0.0, 24.0, 334.0)), (15.0, 5.0, 8.0)), "thyroid", "thyroid_gland")
    trachea = [(0.0, 12.0, 405.0), (0.0, 4.0, 320.0), (0.0, -2.0, 252.0)]
    paint(s.tube(trachea, [11.0, 11.0, 10.0]), "trachea_wall", "trachea")
    paint(s.tube(trachea, [11.0, 11.0, 10.0], shrink=2.5), "air", "trachea")
    return tissue, label


def _paint_spine(
    coords: np.ndarray, ys: np.ndarray, paint: Callable[[np.ndarray, str, str | None], None]
) -> None:
    """Vertebrae from the sacrum to the neck; the first lumbar one is labelled."""
    x, y, z = coords
    bx = np.interp(z, _BODY_Z, _BODY_AX).astype(np.float32)
    by = np.interp(z, _BODY_Z, _BODY_AY).astype(np.float32)
    level = np.searchsorted(_DISCS, z)
    below = _DISCS[np.clip(level - 1, 0, len(_DISCS) - 1)]
    above = _DISCS[np.clip(level, 0, len(_DISCS) - 1)]
    gap = np.minimum(np.abs(z - below), np.abs(z - above))  # mm to the nearest disc centre
    disc_half = np.where(z < 20.0, 4.5, np.where(z < 330.0, 3.0, 2.0)).astype(np.float32)
    del level, below, above
    ry = y - ys
    in_range = (z > -160.0) & (z < 400.0)
    body = in_range & ((x / bx) ** 2 + (ry / by) ** 2 <= 1.0)
    core = ((x / (bx - 3.0)) ** 2 + (ry / (by - 3.0)) ** 2 <= 1.0) & (gap > disc_half + 2.5)
    canal_y = ys - by - 9.0
    canal_r2 = x * x + (y - canal_y) ** 2
    arch = in_range & (canal_r2 < 16.0**2) & (y < ys - by + 2.0)
    arch |= in_range & (np.abs(x) < 4.0) & (y < canal_y) & (y > canal_y - 38.0)  # spinous
    arch |= in_range & (z < 200.0) & (np.abs(x) < 42.0) & (np.abs(y - canal_y - 2.0) < 5.0)
    bone = gap > disc_half
    l1 = (z > _L1_RANGE[0]) & (z < _L1_RANGE[1])
    del bx, by, ry, gap, disc_half
    paint(body, "disc", None)
    for in_l1, organ in ((~l1, None), (l1, "lumbar_vertebra_1")):
        paint(body & bone & ~core & in_l1, "cortical_bone", organ)
        paint(body & core & in_l1, "marrow", organ)
        paint(arch & bone & ~body & in_l1, "thin_bone", organ)
    paint(in_range & (canal_r2 < 9.0**2), "csf", None)
