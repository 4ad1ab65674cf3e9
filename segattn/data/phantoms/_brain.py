"""Anatomy of the MALC-like brain phantom: tissue classes and Neuromorphometrics IDs painted at
atlas coordinates (millimetres, RAS, head centre at the origin). See :mod:`.malc` for the
phantom as a whole; this module only decides what lies where.
"""

from __future__ import annotations

import math

import numpy as np

from segattn.data.phantoms._common import ray_depth

# Tissue classes of the image (several unlabelled) and their mean T1 intensity, white matter = 1.
TISSUES = {
    "air": 0.0,
    "fat": 1.15,
    "muscle": 0.45,
    "bone": 0.07,
    "marrow": 0.55,
    "csf": 0.18,
    "cortex": 0.60,
    "white_matter": 1.0,
    "thalamus": 0.76,
    "caudate": 0.62,
    "putamen": 0.64,
    "pallidum": 0.74,
    "accumbens": 0.63,
    "hippocampus": 0.58,
    "amygdala": 0.59,
    "ventral_dc": 0.83,
    "cerebellar_cortex": 0.60,
    "cerebellar_white_matter": 0.93,
    "brainstem": 0.86,
    "vessel": 0.30,
}
_T = {name: i for i, name in enumerate(TISSUES)}

# Neuromorphometrics IDs painted (see segattn.data.malc_labels).
_CSF, _BRAINSTEM, _THIRD, _FOURTH = 46, 35, 4, 11
_CHIASM, _RIGHT_VESSEL = 69, 63  # left vessel 64
_CORTEX = {"left": 211, "right": 210}  # collapsed cortex; parcels replace it in native maps
_SIDED = {  # structure -> (left ID, right ID)
    "cerebral_white_matter": (45, 44),
    "cerebellum_cortex": (39, 38),
    "cerebellum_white_matter": (41, 40),
    "lateral_ventricle": (52, 51),
    "inferior_lateral_ventricle": (50, 49),
    "thalamus": (60, 59),
    "caudate": (37, 36),
    "putamen": (58, 57),
    "pallidum": (56, 55),
    "hippocampus": (48, 47),
    "amygdala": (32, 31),
    "accumbens": (30, 23),
    "ventral_dc": (62, 61),
}
_RIGHT = {name: right for name, (_, right) in _SIDED.items()}
# Native cortical parcels (right-hemisphere ID; the left one is ID + 1) by atlas region.
_PARCELS = {
    "frontal_pole": 120,
    "superior_frontal_gyrus": 190,
    "middle_frontal_gyrus": 142,
    "lateral_orbital_gyrus": 136,
    "precentral_gyrus": 182,
    "superior_temporal_gyrus": 200,
    "superior_parietal_lobule": 198,
    "middle_temporal_gyrus": 154,
    "occipital_pole": 156,
}

# Atlas geometry (mm, RAS, head centre at the origin).
_HULL_CENTRE, _HULL_AXES = (0.0, 2.0, 8.0), (54.0, 68.0, 50.0)  # cerebrum
_FOSSA_CENTRE, _FOSSA_AXES = (0.0, -44.0, -28.0), (47.0, 25.0, 21.0)  # posterior fossa
_CEREBELLUM_AXES = (44.0, 22.0, 18.0)
_VERMIS_HALF_MM = 4.0
FOV_CENTRE = (0.0, 0.0, -4.0)  # atlas point the field of view is centred on
# Layers outside the intracranial surface: (outer distance in mm, tissue), painted outside-in.
_HEAD_LAYERS = (
    (13.0, "fat"),
    (9.5, "muscle"),
    (8.0, "bone"),
    (6.5, "marrow"),
    (4.5, "bone"),
    (3.5, "csf"),
)
_CORTEX_MM = 6.5
_SULCUS_DEPTH_MM = 11.0
_FISSURE_HALF_MM = 2.0
# Sagittal (y, z) ellipse where the hemispheres join: corpus callosum, diencephalon, midbrain.
_BRIDGE_CENTRE, _BRIDGE_AXES = (-4.0, 1.0), (36.0, 32.0)
# Midline ellipsoids: centre, semi-axes (mm).
_THIRD_VENTRICLE = ((0.0, -12.0, 4.0), (4.5, 17.0, 10.5))
_FOURTH_VENTRICLE = ((0.0, -35.0, -30.0), (9.0, 6.5, 11.0))
_SUPRASELLAR_CISTERN = ((0.0, 7.0, -15.0), (13.0, 9.0, 6.0))
_OPTIC_CHIASM = ((0.0, 9.0, -13.5), (8.0, 3.5, 2.5))
_VESSEL_PATH = ((2.0, 13.0, -17.5), (13.0, 5.0, -16.5), 1.8)  # start, end (|x|, y, z), radius


def _rotation(pitch: float, yaw: float) -> np.ndarray:
    """Rotation by ``pitch`` degrees about x, then ``yaw`` degrees about z."""
    p, w = math.radians(pitch), math.radians(yaw)
    about_z = np.array([[math.cos(w), -math.sin(w), 0], [math.sin(w), math.cos(w), 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return about_z @ about_x


# Left-side deep structures in painting order (later ones indent earlier ones): centre, semi-axes
# (mm), bend (mm^-1), taper, (pitch, yaw) degrees.
_HIPPOCAMPUS_CENTRE, _HIPPOCAMPUS_POSE = (-28.0, -20.0, -16.0), (-25.0, 15.0)
_DEEP = {
    "ventral_dc": ((-10.0, -10.0, -11.0), (8.0, 12.0, 7.0), 0.0, 0.0, (0.0, 0.0)),
    "putamen": ((-30.0, 3.0, -1.0), (6.5, 19.0, 11.0), 0.0, 0.0, (0.0, 0.0)),
    "pallidum": ((-19.5, 4.0, -3.0), (6.0, 13.0, 8.5), 0.0, 0.0, (0.0, 0.0)),
    "accumbens": ((-12.0, 19.0, -5.0), (7.5, 9.0, 7.5), 0.0, 0.0, (0.0, 0.0)),
    "caudate": ((-18.5, 10.0, 12.0), (7.5, 17.0, 10.0), -0.008, 0.3, (0.0, 0.0)),
    "thalamus": ((-12.0, -15.0, 3.0), (10.0, 16.0, 10.0), 0.0, 0.0, (0.0, 0.0)),
    "amygdala": ((-27.0, 5.0, -20.0), (8.5, 9.5, 8.0), 0.0, 0.0, (0.0, 0.0)),
    "hippocampus": (_HIPPOCAMPUS_CENTRE, (8.0, 20.0, 8.5), 0.0, 0.0, _HIPPOCAMPUS_POSE),
    # The temporal horn runs along the hippocampus, lateral to and above it (local offset).
    "inferior_lateral_ventricle": (
        tuple(np.add(_HIPPOCAMPUS_CENTRE, _rotation(*_HIPPOCAMPUS_POSE) @ (-6.5, -1.0, 7.0))),
        (5.0, 19.0, 5.0),
        0.0,
        0.0,
        _HIPPOCAMPUS_POSE,
    ),
    "lateral_ventricle": ((-8.5, -4.0, 18.0), (6.5, 30.0, 9.0), -0.01, 0.0, (0.0, 0.0)),
}
_VENTRICLES = {"lateral_ventricle", "inferior_lateral_ventricle"}
# |x|, |y| and z range (mm) of a box holding the ventricles, cisterns and deep structures.
_LOCAL_BOX = (48.0, 48.0, (-45.0, 36.0))


def paint_brain(coords: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tissue classes and Neuromorphometrics IDs (cortex as 211/210) at atlas coordinates."""
    x, y, z = coords
    tissue = np.zeros(x.shape, np.uint8)
    ids = np.zeros(x.shape, np.uint8)
    is_left = (x < 0).view(np.uint8)

    def paint(mask: np.ndarray, tissue_name: str, label: int = 0, sided: bool = False) -> None:
        """``sided``: ``label`` is the right-side ID and the left one is ``label + 1``."""
        tissue[mask] = _T[tissue_name]
        ids[mask] = label + is_left[mask] if sided else label

    # Random anatomy parameters, drawn in a fixed order.
    fold_dirs = rng.standard_normal((8, 3))
    fold_dirs /= np.linalg.norm(fold_dirs, axis=1, keepdims=True)
    fold_freqs = rng.uniform(8.0, 13.0, 8)
    fold_phases = rng.uniform(0, 2 * np.pi, 8)
    ventricle_scale = rng.uniform(0.95, 1.35)
    folia_phase = rng.uniform(0, 2 * np.pi)
    jitter = {
        (side, name): (rng.normal(0.0, 1.0, 3), 1 + 0.04 * rng.standard_normal(3))
        for side in ("left", "right")
        for name in _DEEP
    }

    # Head: neck, spinal canal, then scalp/skull/CSF layers around the intracranial space.
    hx, hy, hz = (c - o for c, o in zip(coords, _HULL_CENTRE, strict=True))
    hull_depth = ray_depth(hx, hy, hz, _HULL_AXES)
    fx, fy, fz = (c - o for c, o in zip(coords, _FOSSA_CENTRE, strict=True))
    fossa_depth = ray_depth(fx, fy, fz, _FOSSA_AXES)
    outside = -np.maximum(hull_depth, fossa_depth)
    neck_depth = ray_depth(x, y + 14.0, np.zeros_like(x), (46.0, 48.0, 1.0))
    neck = (z < -30.0) & (neck_depth > 0)
    paint(neck, "muscle")
    paint(neck & (neck_depth < 5.0), "fat")
    for distance, name in _HEAD_LAYERS:
        paint(outside <= distance, name, _CSF if name == "csf" else 0)
    stem_y = -13.0 + (z + 2.0) * (13.0 / 46.0)
    canal_r2 = x * x + (y - stem_y) ** 2
    below = z < -44.0
    paint(below & (canal_r2 < 16.0**2) & (z < -60.0), "bone")
    paint(below & (canal_r2 < 9.0**2), "csf", _CSF)
    paint(below & (canal_r2 < 5.5**2), "brainstem")  # spinal cord, unlabelled

    # Cerebrum: CSF / folded cortex ribbon / white matter, and the interhemispheric fissure.
    inside = hull_depth > 0
    # Gyri: sulci follow the zero lines of a smooth random function of the direction from the
    # hull centre; the pial surface dips by up to _SULCUS_DEPTH_MM there (the radius modulation).
    ux, uy, uz = hx / _HULL_AXES[0], hy / _HULL_AXES[1], hz / _HULL_AXES[2]
    rho = np.maximum(np.sqrt(ux * ux + uy * uy + uz * uz), np.float32(1e-6))
    ux, uy, uz = ux / rho, uy / rho, uz / rho
    folds = np.zeros_like(x)
    for direction, freq, phase in zip(fold_dirs, fold_freqs, fold_phases, strict=True):
        k = (direction * freq).astype(np.float32)
        folds += np.sin(k[0] * ux + k[1] * uy + k[2] * uz + np.float32(phase))
    folds *= np.float32(math.sqrt(2.0 / len(fold_freqs)))
    del ux, uy, uz, rho
    sulcus = _SULCUS_DEPTH_MM * np.exp(-((folds / 0.22) ** 2))
    sulcus_wide = _SULCUS_DEPTH_MM * np.exp(-((folds / 0.55) ** 2))
    del folds
    # The fissure splits the hemispheres except in an arch under the corpus callosum's top.
    fissure_zone = ((y - _BRIDGE_CENTRE[0]) / _BRIDGE_AXES[0]) ** 2 + (
        (z - _BRIDGE_CENTRE[1]) / _BRIDGE_AXES[1]
    ) ** 2 > 1.0
    midline_depth = np.abs(x) - _FISSURE_HALF_MM
    csf = inside & ((hull_depth < sulcus) | (fissure_zone & (midline_depth < 0)))
    cortex = (
        inside
        & ~csf
        & ((hull_depth < sulcus_wide + _CORTEX_MM) | (fissure_zone & (midline_depth < _CORTEX_MM)))
    )
    paint(inside & ~csf & ~cortex, "white_matter", _RIGHT["cerebral_white_matter"], sided=True)
    paint(cortex, "cortex", _CORTEX["right"], sided=True)
    paint(csf, "csf", _CSF)
    del sulcus, sulcus_wide, csf, cortex, midline_depth, fissure_zone

    # Posterior fossa: CSF, cerebellum with folia and a vermis, brainstem in its cistern.
    paint(fossa_depth > 0, "csf", _CSF)
    cb_depth = ray_depth(fx, fy, fz, _CEREBELLUM_AXES)
    in_cb = cb_depth > 0
    # Arbor vitae: a white matter core with branches fanning out in the sagittal plane.
    fan = np.arctan2(fz, fy / 1.2) * 7.0 + np.float32(folia_phase) + 1.5 * fx / _CEREBELLUM_AXES[0]
    branches = (cb_depth > 3.0) & (np.sin(fan) > 0.2)
    cb_white = in_cb & ((cb_depth > 9.0) | branches)
    paint(in_cb, "cerebellar_cortex", _RIGHT["cerebellum_cortex"], sided=True)
    paint(cb_white, "cerebellar_white_matter", _RIGHT["cerebellum_white_matter"], sided=True)
    # Vermis lobules I-V (anterior-superior), VI-VII (posterior-superior), VIII-X (inferior).
    vermis = np.flatnonzero(in_cb & (np.abs(x) < _VERMIS_HALF_MM))
    vy, vz = fy.reshape(-1)[vermis], fz.reshape(-1)[vermis]
    ids.reshape(-1)[vermis] = np.where(vz > 2.0, np.where(vy > -6.0, 71, 72), 73)
    del fan, branches, cb_white, vermis
    pons = np.exp(-(((z + 26.0) / 10.0) ** 2))
    stem_r2 = (x / (10.0 + 3.0 * pons)) ** 2 + (
        (y - stem_y - 3.0 * pons) / (11.0 + 4.0 * pons)
    ) ** 2
    stem_range = (z > -48.0) & (z < -2.0)
    cistern_r2 = (x / (13.0 + 3.0 * pons)) ** 2 + (
        (y - stem_y - 3.0 * pons) / (14.0 + 4.0 * pons)
    ) ** 2
    paint(stem_range & (cistern_r2 <= 1.0) & (outside < 0) & ~in_cb, "csf", _CSF)
    paint(stem_range & (stem_r2 <= 1.0), "brainstem", _BRAINSTEM)
    del pons, stem_r2, cistern_r2, stem_range, in_cb, cb_depth

    # Small structures, evaluated only in a box around them (flat voxel indices).
    box = np.abs(x) < _LOCAL_BOX[0]
    box &= np.abs(y) < _LOCAL_BOX[1]
    box &= (z > _LOCAL_BOX[2][0]) & (z < _LOCAL_BOX[2][1])
    index = np.flatnonzero(box)
    del box
    bx, by, bz = (c.reshape(-1)[index] for c in (x, y, z))
    flat_tissue, flat_ids, flat_left = tissue.reshape(-1), ids.reshape(-1), is_left.reshape(-1)

    def paint_at(mask: np.ndarray, tissue_name: str, label: int, sided: bool = False) -> None:
        where = index[mask]
        flat_tissue[where] = _T[tissue_name]
        flat_ids[where] = label + flat_left[where] if sided else label

    paint_at(_ellipsoid(bx, by, bz, *_FOURTH_VENTRICLE), "csf", _FOURTH)
    # Suprasellar cistern with the optic chiasm and two vessels (both background for QuickNAT).
    paint_at(_ellipsoid(bx, by, bz, *_SUPRASELLAR_CISTERN), "csf", _CSF)
    paint_at(_ellipsoid(bx, by, bz, *_OPTIC_CHIASM), "white_matter", _CHIASM)
    vessel = _tube(np.abs(bx), by, bz, *_VESSEL_PATH)
    paint_at(vessel, "vessel", _RIGHT_VESSEL, sided=True)
    # Deep grey nuclei, hippocampi and amygdalae, then ventricles (they indent their neighbours).
    for side, sign in (("left", 1.0), ("right", -1.0)):
        bxm = sign * bx
        for name, (centre, semi_axes, bend, taper, (pitch, yaw)) in _DEEP.items():
            shift, stretch = jitter[(side, name)]
            axes = np.asarray(semi_axes) * stretch
            if name == "lateral_ventricle":
                axes *= (ventricle_scale, math.sqrt(ventricle_scale), ventricle_scale)
            mask = _blob(bxm, by, bz, np.asarray(centre) + shift, axes, bend, taper, pitch, yaw)
            label = _SIDED[name][0 if side == "left" else 1]
            paint_at(mask, "csf" if name in _VENTRICLES else name, label)
    paint_at(_ellipsoid(bx, by, bz, *_THIRD_VENTRICLE), "csf", _THIRD)
    return tissue, ids


def parcellate(coords: np.ndarray, ids: np.ndarray) -> None:
    """Replace the collapsed cortex IDs 211/210 by gyral parcels (odd left, even right)."""
    cortex = (ids == _CORTEX["left"]) | (ids == _CORTEX["right"])
    x, y, z = (c[cortex] for c in coords)
    p = _PARCELS
    right_id = np.select(
        [y > 42.0, y > 12.0, y > -12.0, y > -42.0],
        [
            np.full(x.shape, p["frontal_pole"]),
            np.where(z > 28.0, p["superior_frontal_gyrus"], np.where(
                z > 4.0, p["middle_frontal_gyrus"], p["lateral_orbital_gyrus"])),
            np.where(z > 12.0, p["precentral_gyrus"], p["superior_temporal_gyrus"]),
            np.where(z > 12.0, p["superior_parietal_lobule"], p["middle_temporal_gyrus"]),
        ],
        p["occipital_pole"],
    )  # fmt: skip
    ids[cortex] = right_id + (ids[cortex] == _CORTEX["left"])


def _ellipsoid(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    centre: tuple[float, float, float],
    axes: tuple[float, float, float],
) -> np.ndarray:
    """Inside of an axis-aligned ellipsoid."""
    return (
        ((x - np.float32(centre[0])) / np.float32(axes[0])) ** 2
        + ((y - np.float32(centre[1])) / np.float32(axes[1])) ** 2
        + ((z - np.float32(centre[2])) / np.float32(axes[2])) ** 2
    ) <= 1.0


def _tube(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    start: tuple[float, float, float],
    end: tuple[float, float, float],
    radius: float,
) -> np.ndarray:
    """Points within ``radius`` mm of the segment ``start``-``end``."""
    a, d = np.asarray(start, np.float32), np.asarray(end, np.float32) - np.asarray(start)
    d = d.astype(np.float32)
    rx, ry, rz = x - a[0], y - a[1], z - a[2]
    t = np.clip((rx * d[0] + ry * d[1] + rz * d[2]) / np.float32(d @ d), 0.0, 1.0)
    return (rx - t * d[0]) ** 2 + (ry - t * d[1]) ** 2 + (rz - t * d[2]) ** 2 <= radius**2


def _blob(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    centre: np.ndarray,
    axes: np.ndarray,
    bend: float,
    taper: float,
    pitch: float,
    yaw: float,
) -> np.ndarray:
    """Ellipsoid rotated by ``pitch`` (about x) then ``yaw`` (about z), bent and tapered along y.

    ``bend`` lowers the centre line by ``bend * y_local**2`` (negative: ends curve down); ``taper``
    widens x towards +y (the caudate's head).
    """
    lx, ly, lz = x - np.float32(centre[0]), y - np.float32(centre[1]), z - np.float32(centre[2])
    if pitch or yaw:
        r = _rotation(pitch, yaw).T.astype(np.float32)  # world offset -> local frame
        lx, ly, lz = (r[i, 0] * lx + r[i, 1] * ly + r[i, 2] * lz for i in range(3))
    if bend:
        lz = lz + np.float32(bend) * ly * ly
    ax = np.float32(axes[0]) * np.maximum(1 + np.float32(taper) * ly / np.float32(axes[1]), 0.3)
    return (lx / ax) ** 2 + (ly / np.float32(axes[1])) ** 2 + (lz / np.float32(axes[2])) ** 2 <= 1.0
