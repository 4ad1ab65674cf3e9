"""MALC-like synthetic T1-weighted brain MRI phantoms with 17 labelled structures.

Stands in for the MICCAI 2012 Multi-Atlas Labeling Challenge data (OASIS T1, about 1 mm; see
DESIGN.md "Data layouts") where the real scans are not at hand: a head with scalp, skull and CSF
around a brain whose cortex is a folded ribbon over white matter, lateral and third ventricles, deep
grey nuclei, hippocampi, cerebellum and brainstem. Left and right structures look alike and the
deep grey nuclei are about as dark as cortex, so a network has to use position and shape, not just
intensity. Each case gets its own head pose and size, smooth deformation, ventricle size, gyral
pattern, tissue contrasts, bias field, blur and Rician noise (see ``_common`` for the geometry).

Anatomy is defined in millimetres, smaller and simpler than a real brain: the cortex is about
6.5 mm thick instead of 2.5 mm and small nuclei are enlarged, so that every structure keeps a few
hundred voxels at 64^3 (2.75 mm voxels) and Dice stays meaningful there.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from segattn.data.layout import DatasetInfo
from segattn.data.phantoms._common import (
    PhantomCase,
    atlas_coordinates,
    bias_field,
    make_geometry,
    ray_depth,
    rician_noise,
    smooth_displacement,
    write_phantom_dataset,
)

#: Field of view (mm) of the cubic grid; ``size`` voxels span it (128 -> 1.375 mm, 64 -> 2.75 mm).
FOV_MM = 176.0

#: Structure name -> label value (nnU-Net ``labels`` order); left/right pairs interleave.
MALC_LABELS: dict[str, int] = {
    name: value
    for value, name in enumerate(
        [
            "background",
            "left_cerebral_white_matter",
            "right_cerebral_white_matter",
            "left_cerebral_cortex",
            "right_cerebral_cortex",
            "left_lateral_ventricle",
            "right_lateral_ventricle",
            "left_thalamus",
            "right_thalamus",
            "left_caudate",
            "right_caudate",
            "left_putamen",
            "right_putamen",
            "left_hippocampus",
            "right_hippocampus",
            "left_cerebellum",
            "right_cerebellum",
            "brainstem",
        ]
    )
}

# Tissue classes of the image (several unlabelled) and their mean T1 intensity, white matter = 1.
_TISSUES = {
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
    "hippocampus": 0.58,
    "cerebellar_cortex": 0.60,
    "cerebellar_white_matter": 0.93,
    "brainstem": 0.86,
}
_T = {name: i for i, name in enumerate(_TISSUES)}
_INTENSITY_SCALE = 110.0  # WM in image units, roughly as in OASIS scans

# Atlas geometry (mm, RAS, head centre at the origin).
_HULL_CENTRE, _HULL_AXES = (0.0, 2.0, 8.0), (54.0, 68.0, 50.0)  # cerebrum
_FOSSA_CENTRE, _FOSSA_AXES = (0.0, -44.0, -28.0), (47.0, 25.0, 21.0)  # posterior fossa
_CEREBELLUM_AXES = (44.0, 22.0, 18.0)
_FOV_CENTRE = (0.0, 0.0, -4.0)
# Layers outside the intracranial surface: (outer distance in mm, tissue), painted outside-in.
_HEAD_LAYERS = (
    (13.0, "fat"),
    (9.5, "muscle"),
    (8.0, "bone"),
    (6.5, "marrow"),
    (4.0, "bone"),
    (2.5, "csf"),
)
_CORTEX_MM = 6.5
_SULCUS_DEPTH_MM = 11.0
_FISSURE_HALF_MM = 2.0
# Sagittal (y, z) ellipse where the hemispheres join: corpus callosum, diencephalon, midbrain.
_BRIDGE_CENTRE, _BRIDGE_AXES = (-4.0, 1.0), (36.0, 32.0)

# Left-side deep structures: centre, semi-axes (mm), bend (mm^-1), taper, (pitch, yaw) degrees.
_DEEP = {
    "putamen": ((-30.0, 3.0, -1.0), (6.5, 19.0, 11.0), 0.0, 0.0, (0.0, 0.0)),
    "caudate": ((-18.5, 10.0, 12.0), (7.5, 17.0, 10.0), -0.008, 0.3, (0.0, 0.0)),
    "thalamus": ((-12.0, -15.0, 3.0), (10.0, 16.0, 10.0), 0.0, 0.0, (0.0, 0.0)),
    "hippocampus": ((-28.0, -20.0, -16.0), (8.0, 20.0, 8.5), 0.0, 0.0, (-25.0, 15.0)),
    "lateral_ventricle": ((-8.5, -4.0, 18.0), (6.5, 30.0, 9.0), -0.01, 0.0, (0.0, 0.0)),
}


def make_malc_case(seed: int, size: int = 128, *, orientation: str | None = None) -> PhantomCase:
    """Generate one MALC-like T1 case on a ``size``^3 grid spanning :data:`FOV_MM` mm.

    The same ``seed`` gives identical arrays; the anatomy depends on ``seed`` only, so ``size``
    and ``orientation`` change only how it is sampled and stored.

    Args:
        seed: case seed (>= 0).
        size: voxels per axis (>= 16); spacing is ``FOV_MM / size``.
        orientation: voxel axis order such as ``"LPS"``; None picks one of
            :data:`~segattn.data.phantoms.ORIENTATIONS` from the seed.

    Returns:
        ``(image, label, affine)``: float32 T1 image, uint8 labels (values of
        :data:`MALC_LABELS`), and the 4x4 voxel-to-RAS-world affine in mm.

    Example:
        >>> image, label, affine = make_malc_case(0, size=32, orientation="LIA")
        >>> image.shape, image.dtype, label.dtype, int(label.max())
        ((32, 32, 32), dtype('float32'), dtype('uint8'), 17)
    """
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    rng = np.random.default_rng(seed)
    spacing = FOV_MM / size
    geometry = make_geometry(
        rng, (size, size, size), (spacing,) * 3, orientation=orientation, fov_centre=_FOV_CENTRE
    )
    coords = atlas_coordinates(geometry)
    coords += smooth_displacement(rng, coords, amplitude_mm=2.5)
    tissue, label = _paint(coords, rng)
    del coords
    image = _render(tissue, rng, spacing)
    return PhantomCase(image, label, geometry.affine)


def make_malc_dataset(
    out_dir: str | Path,
    cases: int,
    size: int = 128,
    seed: int = 0,
    test_cases: int = 0,
    overwrite: bool = False,
) -> DatasetInfo:
    """Write ``cases`` MALC-like cases as an nnU-Net v2 dataset and return its :class:`DatasetInfo`.

    Cases are ``malc_000``, ``malc_001``, ...; the last ``test_cases`` go to ``imagesTs``/
    ``labelsTs``. An existing complete dataset made with the same arguments is reused unless
    ``overwrite``; files are written atomically and dataset.json last.

    Example:
        >>> import tempfile
        >>> info = make_malc_dataset(tempfile.mkdtemp(), cases=4, size=32, test_cases=1)
        >>> len(info.training), len(info.test), info.num_classes
        (3, 1, 18)
    """
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    return write_phantom_dataset(
        out_dir,
        kind="malc",
        make_case=lambda case_seed: make_malc_case(case_seed, size),
        channel_names={"0": "T1"},
        labels=MALC_LABELS,
        cases=cases,
        test_cases=test_cases,
        seed=seed,
        params={"size": size, "version": 1},
        description=f"Synthetic MALC-like T1 brain MRI phantoms, {size}^3 voxels of "
        f"{FOV_MM / size:.3g} mm (segattn.data.phantoms.malc)",
        overwrite=overwrite,
    )


def _paint(coords: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tissue classes and labels at atlas coordinates ``(3, *shape)``."""
    x, y, z = coords
    tissue = np.zeros(x.shape, np.uint8)
    label = np.zeros(x.shape, np.uint8)
    left = x < 0

    def paint(mask: np.ndarray, tissue_name: str, label_value: int | np.ndarray = 0) -> None:
        tissue[mask] = _T[tissue_name]
        label[mask] = label_value[mask] if isinstance(label_value, np.ndarray) else label_value

    def sided(name: str) -> np.ndarray:
        return np.where(left, MALC_LABELS[f"left_{name}"], MALC_LABELS[f"right_{name}"]).astype(
            np.uint8
        )

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
        paint(outside <= distance, name)
    stem_y = -13.0 + (z + 2.0) * (13.0 / 46.0)
    canal_r2 = x * x + (y - stem_y) ** 2
    below = z < -44.0
    paint(below & (canal_r2 < 16.0**2) & (z < -60.0), "bone")
    paint(below & (canal_r2 < 9.0**2), "csf")
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
    paint(inside & ~csf & ~cortex, "white_matter", sided("cerebral_white_matter"))
    paint(cortex, "cortex", sided("cerebral_cortex"))
    paint(csf, "csf")
    del sulcus, sulcus_wide, csf, cortex, midline_depth, fissure_zone

    # Posterior fossa: CSF, cerebellum with folia, brainstem in its cistern.
    paint(fossa_depth > 0, "csf")
    cb_depth = ray_depth(fx, fy, fz, _CEREBELLUM_AXES)
    in_cb = cb_depth > 0
    # Arbor vitae: a white matter core with branches fanning out in the sagittal plane.
    fan = np.arctan2(fz, fy / 1.2) * 7.0 + np.float32(folia_phase) + 1.5 * fx / _CEREBELLUM_AXES[0]
    branches = (cb_depth > 3.0) & (np.sin(fan) > 0.2)
    cb_white = in_cb & ((cb_depth > 9.0) | branches)
    paint(in_cb, "cerebellar_cortex", sided("cerebellum"))
    paint(cb_white, "cerebellar_white_matter", sided("cerebellum"))
    del fan, branches, cb_white
    pons = np.exp(-(((z + 26.0) / 10.0) ** 2))
    stem_r2 = (x / (10.0 + 3.0 * pons)) ** 2 + (
        (y - stem_y - 3.0 * pons) / (11.0 + 4.0 * pons)
    ) ** 2
    stem_range = (z > -48.0) & (z < -2.0)
    cistern_r2 = (x / (13.0 + 3.0 * pons)) ** 2 + (
        (y - stem_y - 3.0 * pons) / (14.0 + 4.0 * pons)
    ) ** 2
    paint(stem_range & (cistern_r2 <= 1.0) & (outside < 0) & ~in_cb, "csf")
    paint(stem_range & (stem_r2 <= 1.0), "brainstem", MALC_LABELS["brainstem"])

    # Deep grey nuclei, hippocampi, then ventricles (drawn last: they indent their neighbours).
    for side, sign in (("left", 1.0), ("right", -1.0)):
        xm = sign * x
        for name, (centre, semi_axes, bend, taper, (pitch, yaw)) in _DEEP.items():
            shift, stretch = jitter[(side, name)]
            axes = np.asarray(semi_axes) * stretch
            if name == "lateral_ventricle":
                axes *= (ventricle_scale, math.sqrt(ventricle_scale), ventricle_scale)
            mask = _blob(xm, y, z, np.asarray(centre) + shift, axes, bend, taper, pitch, yaw)
            tissue_name = "csf" if name == "lateral_ventricle" else name
            paint(mask, tissue_name, MALC_LABELS[f"{side}_{name}"])
    third = ((x / 2.0) ** 2 + ((y + 12.0) / 15.0) ** 2 + ((z - 4.0) / 9.0) ** 2) <= 1.0
    paint(third, "csf")
    return tissue, label


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
        p, w = math.radians(pitch), math.radians(yaw)
        rotation = np.array(
            [[math.cos(w), -math.sin(w), 0], [math.sin(w), math.cos(w), 0], [0, 0, 1]]
        ) @ np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
        r = rotation.T.astype(np.float32)  # world offset -> local frame
        lx, ly, lz = (r[i, 0] * lx + r[i, 1] * ly + r[i, 2] * lz for i in range(3))
    if bend:
        lz = lz + np.float32(bend) * ly * ly
    ax = np.float32(axes[0]) * np.maximum(1 + np.float32(taper) * ly / np.float32(axes[1]), 0.3)
    return (lx / ax) ** 2 + (ly / np.float32(axes[1])) ** 2 + (lz / np.float32(axes[2])) ** 2 <= 1.0


def _render(tissue: np.ndarray, rng: np.random.Generator, spacing: float) -> np.ndarray:
    """T1 image from tissue classes: contrasts, texture, blur, bias field, Rician noise."""
    means = np.array(list(_TISSUES.values()), dtype=np.float32)
    means *= 1 + 0.03 * rng.standard_normal(len(means)).astype(np.float32)
    noise_sigma = rng.uniform(0.02, 0.04)
    bias = bias_field(rng, tissue.shape, strength=0.12)
    # Everything below depends on the grid size; draws that do not come first.
    texture_sigma = max(2.0 / spacing, 0.5)
    texture = ndimage.gaussian_filter(
        rng.standard_normal(tissue.shape, dtype=np.float32), texture_sigma
    )
    texture *= np.float32(0.03 * (4 * math.pi * texture_sigma**2) ** 0.75)
    image = means[tissue] * (1 + texture)
    del texture
    image = ndimage.gaussian_filter(image, 0.6)
    image *= bias
    image = rician_noise(rng, image, noise_sigma)
    image *= np.float32(_INTENSITY_SCALE)
    return image.astype(np.float32, copy=False)
