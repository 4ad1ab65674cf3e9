"""Pieces every synthetic phantom shares: scanner geometry, smooth random fields, dataset writing.

A phantom's anatomy lives in an "atlas" frame: millimetres, RAS (+x right, +y anterior,
+z superior), origin at the head centre. A case places the head in the world with a small random
pose and size, lays a voxel grid over it whose affine carries a small obliquity, an origin offset
and, for some cases, a non-RAS axis order (LPS, LIA, ...), and warps the atlas with a smooth random
displacement. Whatever the axis order, the affine says where every voxel is in RAS world space.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np

from segattn.data.layout import (
    DATASET_JSON,
    DatasetInfo,
    case_name_from_image,
    channel_file,
    load_dataset,
    write_dataset_json,
)
from segattn.errors import InputFileError, SegattnError
from segattn.imageio import write_image

logger = logging.getLogger(__name__)

#: Voxel axis orders a phantom case may be stored in: RAS (nnU-Net/MNI-like), LAS (FSL
#: radiological), LPS (DICOM/ITK), LIA (FreeSurfer conformed), PIR and ASL (sagittal acquisitions).
ORIENTATIONS = ("RAS", "LAS", "LPS", "LIA", "PIR", "ASL")
#: Dataset layouts a phantom kind writes: nnU-Net v2, or the real data's distributed layout.
LAYOUTS = ("nnunet", "native")

_AXIS_GROUP = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
_AXIS_VECTORS = {
    "R": (1, 0, 0),
    "L": (-1, 0, 0),
    "A": (0, 1, 0),
    "P": (0, -1, 0),
    "S": (0, 0, 1),
    "I": (0, 0, -1),
}


class PhantomCase(NamedTuple):
    """One generated case; unpacks as ``image, label, affine``."""

    image: np.ndarray  # float32, (X, Y, Z) in the stored voxel order
    label: np.ndarray  # uint8, same shape
    affine: np.ndarray  # float64 (4, 4), voxel -> RAS world millimetres


@dataclass(frozen=True)
class Geometry:
    """Where a voxel grid sits: ``affine`` maps voxels to world, ``atlas_from_voxel`` to atlas."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    atlas_from_voxel: np.ndarray
    orientation: str


def orientation_matrix(code: str) -> np.ndarray:
    """3x3 matrix whose column k is the RAS world direction of voxel axis k, e.g. ``"LIA"``."""
    code = code.upper()
    if sorted(_AXIS_GROUP.get(c, -1) for c in code) != [0, 1, 2]:
        raise ValueError(
            f"orientation must name each of L/R, A/P, S/I once, e.g. 'LPS'; got {code!r}"
        )
    return np.array([_AXIS_VECTORS[c] for c in code], dtype=np.float64).T


def random_rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    """Rotation about a uniformly random axis by an angle uniform in [-max_degrees, max_degrees]."""
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(rng.uniform(-max_degrees, max_degrees))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def make_geometry(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    *,
    orientation: str | None = None,
    fov_centre: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scale_range: tuple[float, float] = (0.96, 1.04),
    max_head_rotation: float = 6.0,
    max_grid_rotation: float = 4.0,
) -> Geometry:
    """Draw a head pose and a voxel grid around it.

    The head (atlas frame) is scaled by a factor from ``scale_range`` (plus 2% per-axis jitter),
    rotated by up to ``max_head_rotation`` degrees and moved to a random world position; the grid
    (axis order ``orientation``, random from :data:`ORIENTATIONS` if None) is tilted by up to
    ``max_grid_rotation`` degrees and centred near the atlas point ``fov_centre``. ``spacing`` is
    per voxel axis. The same number of random draws is made whatever the arguments.
    """
    code = ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))]
    code = (orientation or code).upper()
    scale = rng.uniform(*scale_range) * (1 + 0.02 * rng.standard_normal(3))
    head_rotation = random_rotation(rng, max_head_rotation)
    head_position = rng.uniform(-25.0, 25.0, 3)
    grid_rotation = random_rotation(rng, max_grid_rotation)
    grid_jitter = rng.normal(0.0, 2.0, 3)

    world_from_atlas = np.eye(4)
    world_from_atlas[:3, :3] = head_rotation @ np.diag(scale)
    world_from_atlas[:3, 3] = head_position
    grid_centre = world_from_atlas[:3, :3] @ np.asarray(fov_centre) + head_position + grid_jitter
    linear = grid_rotation @ orientation_matrix(code) @ np.diag(spacing)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = grid_centre - linear @ ((np.asarray(shape) - 1) / 2.0)
    return Geometry(shape, affine, np.linalg.inv(world_from_atlas) @ affine, code)


def atlas_coordinates(geometry: Geometry) -> np.ndarray:
    """Atlas millimetre coordinates of every voxel centre, float32 ``(3, *shape)``."""
    m = geometry.atlas_from_voxel.astype(np.float32)
    i, j, k = (np.arange(n, dtype=np.float32) for n in geometry.shape)
    coords = np.empty((3, *geometry.shape), dtype=np.float32)
    for axis in range(3):
        coords[axis] = m[axis, 0] * i[:, None, None] + m[axis, 1] * j[None, :, None]
        coords[axis] += m[axis, 2] * k[None, None, :] + m[axis, 3]
    return coords


def smooth_displacement(
    rng: np.random.Generator,
    coords: np.ndarray,
    amplitude_mm: float = 2.5,
    wavelengths_mm: tuple[float, float] = (70.0, 170.0),
    modes: int = 6,
) -> np.ndarray:
    """A smooth random displacement field evaluated at ``coords`` (``(3, *shape)``, mm).

    A sum of ``modes`` plane waves with random directions, wavelengths and phases, each with a
    random 3-vector amplitude (about ``amplitude_mm`` RMS per component in total). Being analytic
    in atlas coordinates, it is the same field whatever the grid's size or axis order.
    """
    directions = rng.standard_normal((modes, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavenumbers = 2 * np.pi / rng.uniform(*wavelengths_mm, modes)
    phases = rng.uniform(0, 2 * np.pi, modes)
    amplitudes = rng.normal(0.0, amplitude_mm * math.sqrt(2.0 / modes), (modes, 3))
    field = np.zeros_like(coords)
    for direction, wavenumber, phase, amplitude in zip(
        directions, wavenumbers, phases, amplitudes, strict=True
    ):
        w = (direction * wavenumber).astype(np.float32)
        wave = np.sin(w[0] * coords[0] + w[1] * coords[1] + w[2] * coords[2] + np.float32(phase))
        for axis in range(3):
            field[axis] += np.float32(amplitude[axis]) * wave
    return field


def bias_field(
    rng: np.random.Generator, shape: tuple[int, ...], strength: float = 0.12
) -> np.ndarray:
    """Smooth multiplicative intensity inhomogeneity: exp of a random quadratic in grid position."""
    coefficients = rng.normal(0.0, strength, 9).astype(np.float32)
    u, v, w = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    u, v, w = u[:, None, None], v[None, :, None], w[None, None, :]
    log_field = coefficients[0] * u + coefficients[1] * v + coefficients[2] * w
    log_field = log_field + 0.5 * (coefficients[3] * u * u + coefficients[4] * v * v)
    log_field = log_field + 0.5 * (coefficients[5] * w * w + coefficients[6] * u * v)
    log_field = log_field + 0.5 * (coefficients[7] * u * w + coefficients[8] * v * w)
    return np.exp(log_field).astype(np.float32)


def rician_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise, as in MRI (Rician statistics)."""
    real = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    imaginary = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.sqrt(real * real + imaginary * imaginary)


def ray_depth(
    dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, axes: tuple[float, ...]
) -> np.ndarray:
    """Depth in mm below the surface of an ellipsoid, measured along the ray from its centre.

    ``dx, dy, dz`` are offsets from the centre; negative outside. Close to the true signed
    distance for mildly eccentric ellipsoids and much cheaper.
    """
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    rho = np.sqrt((dx / axes[0]) ** 2 + (dy / axes[1]) ** 2 + (dz / axes[2]) ** 2)
    surface = np.divide(r, rho, out=np.full_like(r, min(axes)), where=rho > 1e-6)
    return surface - r


def case_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent per-case seeds derived from one dataset seed."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


def to_nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """NIfTI-1 image with the affine in both sform and qform (scanner coordinates, mm)."""
    image = nib.Nifti1Image(data, affine)
    image.header.set_sform(affine, code=1)
    image.header.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm")
    return image


def write_phantom_dataset(
    out_dir: str | Path,
    *,
    kind: str,
    make_case: Callable[[int], PhantomCase],
    channel_names: Mapping[str | int, str],
    labels: Mapping[str, int],
    cases: int,
    test_cases: int,
    seed: int,
    params: Mapping[str, object],
    description: str,
    overwrite: bool,
) -> DatasetInfo:
    """Write ``cases`` phantom cases as an nnU-Net v2 dataset, or reuse a complete identical one.

    Case ``i`` is named ``{kind}_{i:03d}`` and made by ``make_case(seed_i)``; the last
    ``test_cases`` go to ``imagesTs``/``labelsTs``; per-case seeds derive from ``seed``. These and
    ``params`` (recorded under ``"synthetic"`` in dataset.json) identify the dataset: a folder
    whose dataset.json records the same ones and whose files are all present is returned as is.
    Every file is written atomically and dataset.json last, so an interrupted run never looks
    complete.

    Raises:
        ValueError: bad ``cases``/``test_cases``.
        SegattnError: the folder holds another dataset and ``overwrite`` is False.
    """
    out = phantom_folder(out_dir, cases, test_cases)
    seeds = case_seeds(seed, cases)
    record = {"kind": kind, "cases": cases, "test_cases": test_cases, "seed": seed, **params}
    json_path = out / DATASET_JSON
    if not overwrite:
        existing = reuse_dataset(out, record, test_cases)
        if existing is not None:
            return existing
    json_path.unlink(missing_ok=True)
    names = [f"{kind}_{i:03d}" for i in range(cases)]
    subsets = ["Tr"] * (cases - test_cases) + ["Ts"] * test_cases
    keep = set(zip(subsets, names, strict=True))

    def stale(path: Path) -> bool:
        folder = path.parent.name
        case = case_name_from_image(path) if folder.startswith("images") else path.name
        case = case.removesuffix(".nii.gz")
        return path.name.startswith(f"{kind}_") and (folder[-2:], case) not in keep

    remove_stale([out / f for f in ("imagesTr", "labelsTr", "imagesTs", "labelsTs")], stale)
    for name, subset, case_seed in zip(names, subsets, seeds, strict=True):
        image, label, affine = make_case(case_seed)
        for folder in (out / f"images{subset}", out / f"labels{subset}"):
            folder.mkdir(parents=True, exist_ok=True)
        write_image(to_nifti(image, affine), channel_file(out / f"images{subset}", name, 0))
        write_image(to_nifti(label, affine), out / f"labels{subset}" / f"{name}.nii.gz")
    write_dataset_json(
        out,
        channel_names,
        labels,
        cases - test_cases,
        name=f"synthetic_{kind}",
        description=description,
        synthetic=record,
    )
    return load_dataset(out)


def check_size_and_layout(size: int, layout: str) -> None:
    """Raise ValueError for ``size < 16`` or a ``layout`` not in :data:`LAYOUTS`."""
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def phantom_folder(out_dir: str | Path, cases: int, test_cases: int) -> Path:
    """``out_dir`` as a Path after checking the case counts and that it is not a file.

    Raises:
        ValueError: ``cases < 1`` or ``test_cases`` not in ``0..cases-1``.
        InputFileError: ``out_dir`` exists and is not a folder.
    """
    if cases < 1 or not 0 <= test_cases < cases:
        raise ValueError(f"need cases >= 1 and 0 <= test_cases < cases, got {cases=} {test_cases=}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputFileError(out, "exists and is not a folder")
    return out


def reuse_dataset(out: Path, record: Mapping[str, object], test_cases: int) -> DatasetInfo | None:
    """The complete nnU-Net dataset in ``out`` whose dataset.json records ``record`` under
    ``"synthetic"``, or None when there is none (no dataset.json, or files missing).

    Raises:
        SegattnError: ``out``'s dataset.json records another dataset.
    """
    json_path = out / DATASET_JSON
    if not json_path.is_file():
        return None
    existing = read_record(json_path, "synthetic")
    if existing != record:
        raise SegattnError(
            f"{out} holds {describe_record(existing)}; pass overwrite=True (--overwrite) to "
            "replace it"
        )
    try:
        info = load_dataset(out)
    except SegattnError as err:
        logger.info("regenerating incomplete dataset in %s (%s)", out, err)
        return None
    if len(info.test) == test_cases and all(c.label for c in info.test):
        logger.info("%s already holds this %s dataset; skipping", out, record.get("kind"))
        return info
    return None


def read_record(path: Path, key: str | None = None) -> dict[str, object] | None:
    """The JSON object in ``path`` (its ``key`` entry if given), or None if unreadable or not
    an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        recorded = data if key is None else data.get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, dict) else None


def describe_record(record: Mapping[str, object] | None) -> str:
    """``"a different synthetic dataset (kind=..., ...)"``, or ``"another dataset"`` without a
    record: what a folder holds, for error messages."""
    if not record:
        return "another dataset"
    return f"a different synthetic dataset ({', '.join(f'{k}={v}' for k, v in record.items())})"


def remove_stale(folders: Iterable[Path], stale: Callable[[Path], bool]) -> None:
    """Delete the entries of ``folders`` for which ``stale(path)`` holds, and leftover
    temporaries (``.tmp-*``) of the atomic writers; missing folders are passed over."""
    for directory in folders:
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if path.name.startswith(".tmp-") or stale(path):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
