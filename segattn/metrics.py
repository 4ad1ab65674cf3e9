"""Overlap and boundary metrics between integer label maps.

- :func:`dice_per_label`: Dice per structure from a confusion count (exact, O(voxels) memory, no
  one-hot tensors).
- :func:`surface_scores` / :func:`structure_scores`: the 95th-percentile Hausdorff distance
  (HD95) and the normalised surface distance (NSD, "surface Dice" of Nikolov et al., "Clinically
  applicable segmentation of head and neck anatomy for radiotherapy", 2018,
  https://arxiv.org/abs/1809.04430), in millimetres from the voxel spacing. Metrics Reloaded
  (Maier-Hein et al., 2024, https://arxiv.org/abs/2206.01653) recommends Dice with NSD.

Surfaces are voxel sets, as in MONAI's ``compute_hausdorff_distance``/``compute_surface_dice``: the
voxels of a structure with a face-neighbour outside it (voxels on the image border count as
surface). Distances are Euclidean between voxel centres, with the spacing as the step along each
axis. HD95 is the larger of the two directed 95th percentiles (linear interpolation); NSD is the
share of both surfaces' voxels lying within ``tolerance`` mm of the other surface.

Empty structures (the choices are ours and explicit; MONAI returns NaN or inf for some of them):

- absent from both maps: every metric is NaN (no evidence; left out of means);
- absent from one map only: Dice 0, NSD 0 and HD95 = the image diagonal in mm
  (``sqrt(sum((shape * spacing) ** 2))``, the largest distance the grid can express). MONAI gives
  NaN for HD95 there (MONAI issue 9095), which would leave a missed structure out of the mean
  and so score it better than a poor segmentation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

#: metric names accepted by :func:`structure_scores` and ``segattn evaluate --metrics``
METRICS = ("dice", "hd95", "nsd")
#: voxel size in mm along each array axis
Spacing = Sequence[float] | np.ndarray


def dice_per_label(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Dice of every foreground label 1..num_classes-1 between two integer label maps.

    Args:
        pred: integer labels in ``0..num_classes-1``, any shape.
        target: integer labels in ``0..num_classes-1``, same shape as ``pred``.
        num_classes: number of classes including background 0.

    Returns:
        float64 tensor ``(num_classes - 1,)``; ``nan`` where a label is absent from both maps
        (no evidence either way, so it is left out of means), 0 where it is in only one.

    Raises:
        ValueError: shapes differ, ``num_classes < 1``, or a label lies outside
            ``0..num_classes-1`` (the message lists the offending values).

    Example::

        >>> dice_per_label(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 4)
        tensor([0.6667, 0.6667,    nan], dtype=torch.float64)
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    p = pred.reshape(-1).long()
    t = target.reshape(-1).long()
    for name, x in (("pred", p), ("target", t)):
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= num_classes):
            bad = torch.unique(x[(x < 0) | (x >= num_classes)])[:10].tolist()
            raise ValueError(f"{name} has labels {bad} outside 0..{num_classes - 1}")
    inter = torch.bincount(t[p == t], minlength=num_classes).double()
    size_p = torch.bincount(p, minlength=num_classes).double()
    size_t = torch.bincount(t, minlength=num_classes).double()
    denom = size_p + size_t
    dice = torch.where(
        denom > 0, 2 * inter / denom.clamp_min(1), torch.full_like(denom, float("nan"))
    )
    return dice[1:]


# --- surface metrics -------------------------------------------------------------------------


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """``metrics`` as a tuple without duplicates, in the given order.

    Raises:
        ValueError: empty, or a name outside :data:`METRICS`.
    """
    names = tuple(dict.fromkeys(str(m).strip().lower() for m in metrics))
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise ValueError(f"metrics must be among {list(METRICS)}, got {list(metrics)}")
    return names


def image_diagonal(shape: Sequence[int], spacing: Spacing) -> float:
    """Length in mm of the image's diagonal, ``sqrt(sum((shape * spacing) ** 2))``."""
    return float(np.sqrt(np.sum((np.asarray(shape, float) * np.asarray(spacing, float)) ** 2)))


def surface_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Spacing,
    tolerance: float = 1.0,
    percentile: float = 95.0,
) -> tuple[float, float]:
    """HD95 and NSD between two binary masks.

    Args:
        pred: boolean mask, any number of dimensions.
        ref: boolean mask, same shape.
        spacing: voxel size in mm along each axis of the masks.
        tolerance: NSD tolerance in mm (a surface voxel counts when the other surface is at
            most this far).
        percentile: the Hausdorff percentile (95 gives HD95, 100 the Hausdorff distance).

    Returns:
        ``(hd, nsd)``: both NaN when both masks are empty; ``(image diagonal, 0.0)`` when exactly
        one is empty.

    Raises:
        ValueError: shapes differ, ``spacing`` has the wrong length or a non-positive entry,
            ``tolerance < 0`` or ``percentile`` outside [0, 100].

    Example::

        >>> ref = np.zeros((8, 8, 8), bool); ref[2:6, 2:6, 2:6] = True
        >>> surface_scores(np.roll(ref, 1, axis=0), ref, (1.0, 1.0, 1.0))
        (1.0, 1.0)
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"pred shape {pred.shape} != ref shape {ref.shape}")
    step = _check_surface_args(pred.ndim, spacing, tolerance, percentile)
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not (has_pred or has_ref):
        return math.nan, math.nan
    if not (has_pred and has_ref):
        return image_diagonal(pred.shape, step), 0.0
    box = _grow(_bounding_box(pred | ref), pred.shape)
    return _present_scores(pred[box], ref[box], step, tolerance, percentile)


def structure_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    num_classes: int,
    spacing: Spacing,
    metrics: Sequence[str] = ("dice",),
    tolerance: float = 1.0,
) -> dict[str, np.ndarray]:
    """Every requested metric for every foreground label ``1..num_classes-1``.

    Args:
        pred: integer label map in ``0..num_classes-1``.
        ref: integer label map, same shape.
        num_classes: number of classes including background 0.
        spacing: voxel size in mm along each axis.
        metrics: names among :data:`METRICS`.
        tolerance: NSD tolerance in mm.

    Returns:
        metric name -> float64 array ``(num_classes - 1,)`` (index ``v - 1`` for label ``v``),
        with the empty-structure values of the module docstring.

    Raises:
        ValueError: as :func:`dice_per_label` and :func:`surface_scores`, or unknown metrics.
    """
    names = check_metrics(metrics)
    pred_arr, ref_arr = np.asarray(pred), np.asarray(ref)
    step = _check_surface_args(pred_arr.ndim, spacing, tolerance, 95.0)
    # checks shapes and label range for every metric
    dice = dice_per_label(torch.from_numpy(pred_arr), torch.from_numpy(ref_arr), num_classes)
    out = {"dice": dice.numpy()}
    if len(names) > 1 or names[0] != "dice":
        hd = np.full(num_classes - 1, math.nan)
        nsd = np.full(num_classes - 1, math.nan)
        pred_boxes = ndimage.find_objects(pred_arr, num_classes - 1)
        ref_boxes = ndimage.find_objects(ref_arr, num_classes - 1)
        diagonal = image_diagonal(pred_arr.shape, step)
        for value in range(1, num_classes):
            boxes = [b for b in (pred_boxes[value - 1], ref_boxes[value - 1]) if b is not None]
            if len(boxes) == 1:
                hd[value - 1], nsd[value - 1] = diagonal, 0.0
            elif boxes:
                union = [slice(min(p.start, r.start), max(p.stop, r.stop)) for p, r in zip(*boxes)]
                box = _grow(union, pred_arr.shape)
                hd[value - 1], nsd[value - 1] = _present_scores(
                    pred_arr[box] == value, ref_arr[box] == value, step, tolerance, 95.0
                )
        out.update({"hd95": hd, "nsd": nsd})
    return {m: out[m] for m in names}


def _check_surface_args(
    ndim: int, spacing: Spacing, tolerance: float, percentile: float
) -> np.ndarray:
    """The spacing as float64 ``(ndim,)`` after checking every surface-metric argument."""
    step = np.asarray(spacing, dtype=np.float64)
    if step.shape != (ndim,) or not np.all(step > 0):
        raise ValueError(f"spacing must hold {ndim} positive numbers, got {list(spacing)}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0 mm, got {tolerance}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    return step


def _present_scores(
    pred: np.ndarray, ref: np.ndarray, step: np.ndarray, tolerance: float, percentile: float
) -> tuple[float, float]:
    """HD and NSD of two non-empty masks cropped by :func:`_grow` (every surface voxel of both
    lies inside the crop, so the distance transforms of the crop are exact)."""
    pred_surface, ref_surface = _surface(pred), _surface(ref)
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=step)[pred_surface]
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=step)[ref_surface]
    hd = max(float(np.percentile(to_ref, percentile)), float(np.percentile(to_pred, percentile)))
    within = np.count_nonzero(to_ref <= tolerance) + np.count_nonzero(to_pred <= tolerance)
    return hd, int(within) / (to_ref.size + to_pred.size)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the smallest box holding the non-empty ``mask``."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _grow(box: Sequence[slice], shape: Sequence[int]) -> tuple[slice, ...]:
    """``box`` grown by one voxel on each side within ``shape``: a mask cropped to it has the
    same surface as the whole mask (the added layer is background or the image border)."""
    return tuple(
        slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, shape, strict=True)
    )


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face-neighbour outside it (or outside the array)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)
