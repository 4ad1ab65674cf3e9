"""World geometry of scans: one tolerance, one RAS affine convention, grid comparisons.

Every scan is described the way the NIfTI path describes it: a voxel array indexed ``(i, j, k)``
and a 4 x 4 affine mapping ``(i, j, k, 1)`` to RAS+ millimetres (+x right, +y anterior,
+z superior). ITK and DICOM store LPS+ geometry (origin, spacing, direction cosines);
converting flips the sign of the first two world axes and nothing else, so voxel ``(i, j, k)``
is the same voxel in both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segattn.errors import InputFileError

#: Largest difference still taken as "the same": mm for affine entries and positions, and the
#: same number for unit direction cosines (about 0.06 degrees). The only geometry tolerance.
GEOMETRY_TOLERANCE = 1e-3

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def affine_from_itk(
    spacing: tuple[float, ...], origin: tuple[float, ...], direction: tuple[float, ...]
) -> np.ndarray:
    """RAS+ affine ``(4, 4)`` of an ITK/DICOM (LPS+) 3D geometry.

    Args:
        spacing: voxel size along i, j, k (mm).
        origin: LPS position of voxel (0, 0, 0).
        direction: 9 direction cosines, row-major (column c is the direction of index axis c).
    """
    rotation = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ rotation @ np.diag(np.asarray(spacing, dtype=np.float64))
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(origin, dtype=np.float64)
    return affine


def itk_from_affine(
    affine: np.ndarray,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(spacing, origin, direction)`` in ITK's LPS+ convention from a RAS+ affine (inverse of
    :func:`affine_from_itk`; shear, if any, is not representable and is dropped)."""
    affine = np.asarray(affine, dtype=np.float64)
    lps = _LPS_TO_RAS @ affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    direction = lps / spacing
    origin = _LPS_TO_RAS @ affine[:3, 3]
    return (
        tuple(float(s) for s in spacing),
        tuple(float(o) for o in origin),
        tuple(float(d) for d in direction.reshape(-1)),
    )


def affine_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference between two affines' entries."""
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def same_grid(
    shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...], affine_b: np.ndarray
) -> bool:
    """True if two 3D grids have the same shape and affines within :data:`GEOMETRY_TOLERANCE`."""
    return tuple(shape_a[:3]) == tuple(shape_b[:3]) and (
        affine_difference(affine_a, affine_b) <= GEOMETRY_TOLERANCE
    )


def align_to_grid(
    array: np.ndarray,
    affine: np.ndarray,
    target_shape: tuple[int, ...],
    target_affine: np.ndarray,
) -> np.ndarray | None:
    """``array`` ``(X, Y, Z)`` re-indexed onto the target grid when both grids hold the same
    voxel centres in another axis order or direction (e.g. a DICOM series read in slice-position
    order vs. the NIfTI it was made from); None otherwise. No resampling: voxel for voxel.
    """
    import nibabel.orientations as orientations

    if array.ndim != 3 or len(target_shape) < 3:
        return None
    transform = orientations.ornt_transform(
        orientations.io_orientation(affine), orientations.io_orientation(target_affine)
    )
    moved = orientations.apply_orientation(array, transform)
    moved_affine = np.asarray(affine) @ orientations.inv_ornt_aff(transform, array.shape)
    if same_grid(moved.shape, moved_affine, tuple(target_shape), target_affine):
        return np.ascontiguousarray(moved)
    return None


def check_same_grid(
    path: str | Path,
    shape: tuple[int, ...],
    affine: np.ndarray,
    other: str | Path,
    other_shape: tuple[int, ...],
    other_affine: np.ndarray,
    what: str = "",
) -> None:
    """Raise unless ``path``'s grid is ``other``'s (shape, and affine within the tolerance).

    Raises:
        InputFileError: one line naming ``path``, the difference and ``other``; ``what`` (e.g.
            ``"case X: "``) starts the problem text.
    """
    if tuple(shape[:3]) != tuple(other_shape[:3]):
        raise InputFileError(
            path,
            f"{what}shape {tuple(shape[:3])} differs from {other} {tuple(other_shape[:3])}",
        )
    diff = affine_difference(affine, other_affine)
    if not diff <= GEOMETRY_TOLERANCE:
        raise InputFileError(
            path,
            f"{what}affine differs from {other} (max difference {diff:.3g}, tolerance "
            f"{GEOMETRY_TOLERANCE:g})",
        )
