"""Merge VISCERAL's binary organ masks into one label map with the volume's header geometry.

Where masks overlap, the organ with fewer voxels in that volume wins (ties: the lower label value,
i.e. the organ earlier in :data:`segattn.data.visceral_layout.VISCERAL_ORGANS`). Used by the
converter (:func:`segattn.data.visceral.convert_visceral`) and the VISCERAL-like phantoms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np


@dataclass
class MergedLabels:
    """Result of :func:`merge_masks`.

    Attributes:
        label: uint8 label map.
        overlap_voxels: voxels inside more than one mask.
        overlaps: ``(kept, overwritten)`` organ pair -> voxels of ``overwritten`` given to the
            smaller ``kept`` (a voxel in three masks counts once for each of two pairs).
    """

    label: np.ndarray
    overlap_voxels: int = 0
    overlaps: dict[tuple[str, str], int] = field(default_factory=dict)


def mask_voxels(mask: np.ndarray) -> np.ndarray:
    """Flat (C-order) indices of the voxels > 0 of a mask: the form :func:`merge_masks` takes."""
    return np.flatnonzero(np.asarray(mask) > 0)


def merge_masks(
    masks: Mapping[str, np.ndarray], labels: Mapping[str, int], shape: Sequence[int]
) -> MergedLabels:
    """Merge binary organ masks into one uint8 label map; the smaller organ wins overlaps.

    Organs are painted from the largest (most voxels) to the smallest, so every overlapping voxel
    ends up with the smallest organ containing it; among organs of equal size, the one with the
    lower label value wins.

    Args:
        masks: organ name -> flat C-order voxel indices (see :func:`mask_voxels`); this keeps
            twenty masks of a 512x512x400 CT volume in tens, not thousands, of megabytes.
        labels: organ name -> label value (1..255) for every key of ``masks``.
        shape: the grid shape.

    Returns:
        the label map of ``shape`` and the overlap counts.

    Example:
        >>> a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
        >>> a[:2], b[1, :2] = True, True
        >>> merged = merge_masks({"liver": mask_voxels(a), "gallbladder": mask_voxels(b)},
        ...                      {"liver": 1, "gallbladder": 2}, (4, 4))
        >>> merged.label[1].tolist(), merged.overlap_voxels, merged.overlaps
        ([2, 2, 1, 1], 2, {('gallbladder', 'liver'): 2})
    """
    unknown = [name for name in masks if name not in labels]
    if unknown:
        raise ValueError(f"no label value for {unknown}")
    values = {name: int(labels[name]) for name in masks}
    if any(not 1 <= v <= 255 for v in values.values()):
        raise ValueError(f"label values must be in 1..255, got {values}")
    name_of = {v: name for name, v in values.items()}
    size = int(np.prod(shape))
    label = np.zeros(size, np.uint8)
    overlaps: dict[tuple[str, str], int] = {}
    overwritten: list[np.ndarray] = []
    for name in sorted(masks, key=lambda n: (-len(masks[n]), -values[n])):
        index = np.asarray(masks[name])
        if index.size and (index.min() < 0 or index.max() >= size):
            raise ValueError(f"mask {name!r} has voxel indices outside a grid of {tuple(shape)}")
        previous = label[index]
        taken = previous != 0
        if taken.any():
            overwritten.append(index[taken])
            counts = np.bincount(previous[taken], minlength=256)
            for value in np.flatnonzero(counts):
                overlaps[(name, name_of[int(value)])] = int(counts[value])
        label[index] = values[name]
    overlap_voxels = int(np.unique(np.concatenate(overwritten)).size) if overwritten else 0
    return MergedLabels(label.reshape(tuple(shape)), overlap_voxels, overlaps)


def label_image(label: np.ndarray, volume: nib.Nifti1Image, tag: str = "") -> nib.Nifti1Image:
    """A uint8 label NIfTI with ``volume``'s header geometry (qform, sform and their codes).

    The header is the volume's with the data type set to uint8, no intensity scaling and
    ``descrip`` set to ``tag``.
    """
    header = nib.Nifti1Header()
    source = volume.header
    header.set_data_shape(label.shape)
    header.set_zooms(tuple(float(z) for z in source.get_zooms()[: label.ndim]))
    header.set_xyzt_units(*source.get_xyzt_units())
    qform, qcode = source.get_qform(coded=True)
    sform, scode = source.get_sform(coded=True)
    if qform is not None:
        header.set_qform(qform, code=int(qcode))
    if sform is not None:
        header.set_sform(sform, code=int(scode))
    if qform is None and sform is None:  # an Analyze-like header: keep its best affine
        header.set_sform(volume.affine, code=1)
    header.set_data_dtype(np.uint8)
    header["descrip"] = tag.encode()[:79]
    return nib.Nifti1Image(np.ascontiguousarray(label, dtype=np.uint8), None, header=header)
