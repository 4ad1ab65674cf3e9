"""Brain MRI subjects derived from the MNI152 ICBM 2009a template, labelled grey and white matter.

A stand-in for real T1 brain scans with grey/white matter labels when none can be downloaded: the
symmetric ICBM 2009a nonlinear template (Fonov et al., NeuroImage 2011,
https://doi.org/10.1016/j.neuroimage.2010.07.033) and its grey- and white-matter probability maps
ship with nilearn's wheel (``nilearn/datasets/data/mni_icbm152_*_tal_nlin_sym_09a_converted``;
read from there by path, nothing is downloaded, nilearn is not imported). Each subject is the
template moved by its own smooth random deformation -- a scaling, rotation and shift about the
brain centre, then a smooth elastic displacement (about 3 mm RMS per component) -- and imaged on a
stated RAS grid (:func:`mni152_grid`: :data:`FOV_MM` spanned by ``size`` voxels along the
anterior-posterior axis, 100 -> 2 mm) with the blur of that voxel size, a per-subject contrast
(gamma) and intensity scaling, a smooth multiplicative bias field and Rician noise. Labels are the
argmax of (background, grey matter, white matter) of the *deformed* probability maps at each voxel
centre, background being ``1 - GM - WM`` (it includes CSF): 1 = grey matter, 2 = white matter.

The template is skull-stripped, so the images are brains on a dark background. Every subject has
the template's anatomy up to a smooth deformation: this measures how well and how fast a recipe
learns grey/white matter contrast and shape under realistic nuisances, not inter-subject anatomical
variability.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from segattn.data.layout import DatasetInfo
from segattn.data.phantoms._common import (
    PhantomCase,
    bias_field,
    check_size_and_layout,
    random_rotation,
    rician_noise,
    smooth_displacement,
    write_phantom_dataset,
)
from segattn.errors import SegattnError
from segattn.imageio.read import open_nifti

#: Field of view (mm) of the grid along x (left-right), y (posterior-anterior), z (inferior-
#: superior); the template brain spans about 144 x 181 x 154 mm.
FOV_MM = (160.0, 200.0, 176.0)
#: MNI point (mm) at the centre of the grid and of the subjects' scaling and rotation.
FOV_CENTRE = (0.0, -16.0, 6.0)
#: Structure name -> label value.
MNI152_LABELS: dict[str, int] = {"background": 0, "grey_matter": 1, "white_matter": 2}
TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
_VERSION = 1
_INTENSITY_SCALE = 100.0  # template white matter ~0.84 -> ~84 image units before scaling
_TEMPLATE_SPACING = 1.0  # mm, the files' voxel size (checked when loading)


class Template(NamedTuple):
    """The template's T1 and tissue maps as float32 in [0, 1], shape (197, 233, 189)."""

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    affine: np.ndarray  # float64 (4, 4), voxel -> MNI mm


def template_folder() -> Path:
    """nilearn's packaged data folder holding :data:`TEMPLATE_FILES` (nilearn is not imported).

    Raises:
        SegattnError: nilearn is not installed or its wheel lacks the files.
    """
    spec = importlib.util.find_spec("nilearn")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "datasets" / "data"
        if all((folder / name).is_file() for name in TEMPLATE_FILES.values()):
            return folder
    raise SegattnError(
        "the mni152 phantoms need the MNI152 files shipped with nilearn; install it with "
        "`pip install nilearn` (or `pip install segattn[mni152]`)"
    )


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    """Read the template and its GM/WM maps once per process (scaled from uint8 to [0, 1])."""
    folder = template_folder()
    arrays = {}
    affine = None
    for key, name in TEMPLATE_FILES.items():
        image = open_nifti(folder / name)
        arrays[key] = np.asarray(image.dataobj, dtype=np.float32) / np.float32(255.0)
        if affine is not None and not np.allclose(image.affine, affine):
            raise SegattnError(f"{folder / name}: grid differs from the template's")
        affine = image.affine
    assert affine is not None
    if not np.allclose(np.abs(np.diag(affine)[:3]), _TEMPLATE_SPACING):
        raise SegattnError(f"{folder}: expected the 1 mm template, got affine {affine.tolist()}")
    return Template(arrays["t1"], arrays["gm"], arrays["wm"], affine)


def mni152_grid(size: int) -> tuple[tuple[int, int, int], np.ndarray]:
    """The RAS grid of the subjects: ``(shape, affine)``.

    Voxels are cubes of ``FOV_MM[1] / size`` mm (``size`` voxels along y); the grid covers
    :data:`FOV_MM` (rounded to whole voxels) centred on :data:`FOV_CENTRE`, axes aligned with MNI
    space. ``size=100`` gives 2 mm voxels and shape (80, 100, 88).
    """
    spacing = FOV_MM[1] / size
    shape = tuple(max(1, round(f / spacing)) for f in FOV_MM)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = np.asarray(FOV_CENTRE) - spacing * (np.asarray(shape) - 1) / 2.0
    return (shape[0], shape[1], shape[2]), affine


def voxel_coordinates(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World mm coordinates of every voxel centre of a grid, float32 ``(3, *shape)``."""
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = affine[:3, :3].astype(np.float32) @ grid + affine[:3, 3:].astype(np.float32)
    return world.reshape(3, *shape)


def subject_coordinates(
    rng: np.random.Generator, shape: tuple[int, int, int], affine: np.ndarray
) -> np.ndarray:
    """Template (MNI mm) coordinates seen by every voxel of a random subject, ``(3, *shape)``.

    The subject is the template scaled by ``U(0.92, 1.08)`` (with 3% per-axis jitter), rotated by
    up to 8 degrees about a random axis through :data:`FOV_CENTRE` and shifted by ``N(0, 3 mm)``;
    the inverse of that map, followed by a smooth random displacement (a sum of 8 plane waves of
    40-140 mm wavelength, about 3 mm RMS per component, evaluated in template coordinates), takes a
    voxel's world position to the template point it images. Draws from ``rng`` first the affine
    part (always the same number of draws), then the displacement.
    """
    scale = rng.uniform(0.92, 1.08) * (1 + 0.03 * rng.standard_normal(3))
    rotation = random_rotation(rng, 8.0)
    shift = rng.normal(0.0, 3.0, 3)
    centre = np.asarray(FOV_CENTRE)
    # world = R S (p - c) + c + t  =>  p = S^-1 R^T (world - c - t) + c
    inverse = np.diag(1.0 / scale) @ rotation.T
    world = voxel_coordinates(shape, affine).reshape(3, -1)
    offset = (centre - inverse @ (centre + shift)).astype(np.float32)
    coords = (inverse.astype(np.float32) @ world + offset[:, None]).reshape(3, *shape)
    coords += smooth_displacement(
        rng, coords, amplitude_mm=3.0, wavelengths_mm=(40.0, 140.0), modes=8
    )
    return coords


def sample_template(
    coords: np.ndarray, template: Template, blur_mm: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trilinear samples of the template's T1, GM and WM at MNI mm ``coords`` ``(3, *shape)``.

    ``blur_mm`` is the FWHM of a Gaussian applied to the T1 (not to the maps) before sampling,
    the blur of a coarser acquisition. Points outside the template read 0.

    Returns:
        ``(t1, gm, wm)``, float32 arrays of shape ``coords.shape[1:]``.
    """
    inverse = np.linalg.inv(template.affine)
    flat = coords.reshape(3, -1).astype(np.float64)
    index = inverse[:3, :3] @ flat + inverse[:3, 3:]
    t1 = _blurred_t1(round(float(blur_mm), 3)) if blur_mm > 0 else template.t1
    shape = coords.shape[1:]
    return tuple(  # type: ignore[return-value]
        ndimage.map_coordinates(volume, index, order=1, mode="constant", cval=0.0)
        .reshape(shape)
        .astype(np.float32, copy=False)
        for volume in (t1, template.gm, template.wm)
    )


@functools.lru_cache(maxsize=2)
def _blurred_t1(fwhm_mm: float) -> np.ndarray:
    sigma = fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / _TEMPLATE_SPACING
    return ndimage.gaussian_filter(load_template().t1, sigma)


def tissue_labels(gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """uint8 argmax of (background ``1 - gm - wm``, grey matter, white matter); ties go to the
    lower label."""
    stacked = np.stack([1.0 - gm - wm, gm, wm])
    return np.argmax(stacked, axis=0).astype(np.uint8)


def make_mni152_case(seed: int, size: int = 100) -> PhantomCase:
    """One MNI152-derived subject on the grid of :func:`mni152_grid` ``(size)``.

    The same ``seed`` gives identical arrays; the deformation is defined in millimetres, so
    ``size`` changes only the sampling of the same subject.

    Args:
        seed: subject seed (>= 0).
        size: voxels along the anterior-posterior axis (>= 16); spacing ``200 / size`` mm.

    Returns:
        ``(image, label, affine)``: float32 T1, uint8 labels (:data:`MNI152_LABELS`), and the
        4x4 voxel-to-RAS-world affine in mm.

    Example:
        >>> image, label, affine = make_mni152_case(0, size=20)
        >>> image.shape, label.dtype, sorted(set(label.ravel().tolist())), float(affine[0, 0])
        ((16, 20, 18), dtype('uint8'), [0, 1, 2], 10.0)
    """
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    template = load_template()
    rng = np.random.default_rng(seed)
    shape, affine = mni152_grid(size)
    coords = subject_coordinates(rng, shape, affine)
    spacing = float(affine[0, 0])
    # the voxel's own size as FWHM, less the template's 1 mm
    blur = math.sqrt(max(spacing**2 - _TEMPLATE_SPACING**2, 0.0))
    t1, gm, wm = sample_template(coords, template, blur_mm=blur)
    del coords
    label = tissue_labels(gm, wm)
    gamma = rng.uniform(0.8, 1.25)  # contrast: grey/white ratio 0.78 -> 0.73 .. 0.82
    gain = rng.uniform(0.6, 1.6)  # scanner gain
    noise_sigma = rng.uniform(0.015, 0.035)
    bias = bias_field(rng, shape, strength=0.15)
    image = np.power(np.clip(t1, 0.0, None), np.float32(gamma)) * bias
    image = rician_noise(rng, image, noise_sigma)  # size-dependent draws come last
    image *= np.float32(_INTENSITY_SCALE * gain)
    return PhantomCase(image.astype(np.float32, copy=False), label, affine)


def make_mni152_dataset(
    out_dir: str | Path,
    cases: int,
    size: int = 100,
    seed: int = 0,
    test_cases: int = 0,
    overwrite: bool = False,
    layout: str = "nnunet",
) -> DatasetInfo:
    """Write ``cases`` MNI152-derived subjects (``mni152_000``, ...) as an nnU-Net v2 dataset.

    The last ``test_cases`` go to ``imagesTs``/``labelsTs``. An existing complete dataset made
    with the same arguments is reused unless ``overwrite``; files are written atomically and
    ``dataset.json`` last.

    Raises:
        ValueError: bad counts or size, or ``layout`` other than ``"nnunet"`` (the template has
            no distributed layout of its own).
        SegattnError: nilearn (which ships the template) is not installed.
    """
    check_size_and_layout(size, layout)
    if layout != "nnunet":
        raise ValueError(f"the mni152 phantoms have only the nnunet layout, got {layout!r}")
    template_folder()  # fail before writing anything
    shape, affine = mni152_grid(size)
    return write_phantom_dataset(
        out_dir,
        kind="mni152",
        make_case=lambda case_seed: make_mni152_case(case_seed, size),
        channel_names={"0": "T1"},
        labels=MNI152_LABELS,
        cases=cases,
        test_cases=test_cases,
        seed=seed,
        params={"size": size, "version": _VERSION},
        description=f"T1 brain MRI subjects deformed from the MNI152 ICBM 2009a template, "
        f"{'x'.join(map(str, shape))} voxels of {affine[0, 0]:.3g} mm, grey and white matter "
        "(segattn.data.phantoms.mni152)",
        overwrite=overwrite,
    )
