"""HD95 and NSD against hand-computed cases, a brute-force computation and MONAI."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from segattn.metrics import (
    check_metrics,
    image_diagonal,
    structure_scores,
    surface_scores,
)


def _cube(shape: tuple[int, ...], start: int, side: int = 4) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(start, start + side) for _ in shape)] = True
    return mask


# A 4^3 cube and the same cube moved by one voxel along axis 0. Each surface has 56 voxels
# (64 - the 2^3 interior). Of the moved cube's surface, the rings of 12 at its first three
# x-layers (36 voxels) lie on the reference surface (distance 0); its last face (16 voxels) is
# one x-step from the reference's last face; the 4 inner voxels of its first face are one
# x-step from the reference's first face or one y/z-step from its side faces. By symmetry the
# reference surface has the same distances to the moved one. So with spacing (sx, sy, sz):
# 36 zeros, 4 x min(sx, sy, sz), 16 x sx in each direction.
@pytest.mark.parametrize(
    ("spacing", "tolerance", "hd95", "nsd"),
    [
        ((1.0, 1.0, 1.0), 1.0, 1.0, 1.0),  # every distance is 0 or 1
        ((1.0, 1.0, 1.0), 0.5, 1.0, 36 * 2 / 112),  # only the 36 zeros per side count
        ((2.0, 1.0, 1.0), 1.0, 2.0, 40 * 2 / 112),  # 36 zeros + 4 at 1 mm; 16 at 2 mm
        ((2.0, 1.0, 1.0), 2.0, 2.0, 1.0),
        ((1.0, 3.0, 3.0), 1.0, 1.0, 1.0),  # the steps along y, z never enter
        ((0.5, 0.8, 0.9), 0.45, 0.5, 36 * 2 / 112),
    ],
)
def test_shifted_cube(spacing, tolerance, hd95, nsd) -> None:
    ref = _cube((9, 8, 7), 2)
    pred = np.roll(ref, 1, axis=0)
    hd, surface_dice = surface_scores(pred, ref, spacing, tolerance)
    assert hd == pytest.approx(hd95)
    assert surface_dice == pytest.approx(nsd)
    # symmetric in its arguments
    assert surface_scores(ref, pred, spacing, tolerance) == pytest.approx((hd, surface_dice))


def test_shifted_cube_far() -> None:
    # moved by 3 voxels of 1.5 mm: every voxel of the two far faces (16 each of 56) is 4.5 mm
    # from the other surface, more than 5% of them, so HD95 = 4.5 mm
    ref = _cube((12, 8, 8), 1)
    pred = np.roll(ref, 3, axis=0)
    hd, _ = surface_scores(pred, ref, (1.5, 1.0, 1.0), 1.0)
    assert hd == pytest.approx(4.5)


def test_identical_masks_score_perfectly() -> None:
    ref = _cube((7, 9, 11), 2, side=3)
    assert surface_scores(ref, ref, (1.0, 2.0, 3.0), 0.0) == (0.0, 1.0)


def test_empty_cases() -> None:
    ref = _cube((6, 7, 8), 1)
    empty = np.zeros_like(ref)
    spacing = (2.0, 1.0, 0.5)
    diagonal = math.sqrt((6 * 2.0) ** 2 + (7 * 1.0) ** 2 + (8 * 0.5) ** 2)
    assert image_diagonal(ref.shape, spacing) == pytest.approx(diagonal)
    assert surface_scores(empty, ref, spacing) == (pytest.approx(diagonal), 0.0)
    assert surface_scores(ref, empty, spacing) == (pytest.approx(diagonal), 0.0)
    hd, nsd = surface_scores(empty, empty, spacing)
    assert math.isnan(hd) and math.isnan(nsd)


def _brute_force(pred: np.ndarray, ref: np.ndarray, spacing, tolerance: float):
    """All pairwise distances between surface voxels (face-neighbour definition, written out)."""

    def surface(mask: np.ndarray) -> np.ndarray:
        padded = np.pad(mask, 1)
        inner = padded[1:-1, 1:-1, 1:-1].copy()
        for axis in range(3):
            for shift in (-1, 1):
                inner &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
        return np.argwhere(mask & ~inner) * np.asarray(spacing)

    p, r = surface(pred), surface(ref)
    dist = np.sqrt(((p[:, None, :] - r[None, :, :]) ** 2).sum(-1))
    to_ref, to_pred = dist.min(1), dist.min(0)
    hd = max(np.percentile(to_ref, 95), np.percentile(to_pred, 95))
    nsd = ((to_ref <= tolerance).sum() + (to_pred <= tolerance).sum()) / (len(p) + len(r))
    return hd, nsd


@pytest.mark.parametrize("seed", [0, 1])
def test_random_shapes_equal_brute_force_and_monai(seed: int) -> None:
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    rng = np.random.default_rng(seed)
    shape, spacing, tolerance = (13, 15, 11), (0.7, 1.3, 2.1), 1.5
    pred = ndimage.gaussian_filter(rng.random(shape), 2) > 0.5
    ref = ndimage.gaussian_filter(rng.random(shape), 2) > 0.5
    hd, nsd = surface_scores(pred, ref, spacing, tolerance)
    assert (hd, nsd) == pytest.approx(_brute_force(pred, ref, spacing, tolerance))

    def onehot(mask: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([~mask, mask])[None]).double()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monai_hd = compute_hausdorff_distance(
            onehot(pred), onehot(ref), percentile=95, spacing=spacing
        )
        monai_nsd = compute_surface_dice(onehot(pred), onehot(ref), [tolerance], spacing=spacing)
    assert hd == pytest.approx(float(monai_hd), rel=1e-6)
    assert nsd == pytest.approx(float(monai_nsd), rel=1e-6)


def test_two_dimensional_masks() -> None:
    # a 3x3 square moved by one 2 mm column: far edges at 2 mm (3 of 8 voxels per surface)
    ref = np.zeros((7, 6), bool)
    ref[1:4, 1:4] = True
    pred = np.roll(ref, 1, axis=0)
    hd, nsd = surface_scores(pred, ref, (2.0, 1.0), 1.0)
    assert hd == pytest.approx(2.0)
    # the middle voxel of pred's first row is 1 mm from ref's side voxels; 5 of 8 within 1 mm
    assert nsd == pytest.approx(10 / 16)


def test_structure_scores_per_label_and_crop_at_border() -> None:
    pred = np.zeros((10, 9, 8), np.int64)
    ref = np.zeros_like(pred)
    ref[0:4, 0:4, 0:4] = 1  # touches the image border: crop must keep border voxels as surface
    pred[1:5, 0:4, 0:4] = 1
    ref[6:9, 5:8, 4:7] = 2
    pred[6:9, 4:7, 4:7] = 2
    pred[0, 8, 7] = 3  # label 3 only in the prediction; label 4 absent from both
    spacing = (1.2, 0.9, 1.7)
    found = structure_scores(pred, ref, 5, spacing, ("nsd", "dice", "hd95"), tolerance=1.0)
    assert list(found) == ["nsd", "dice", "hd95"]
    for value in (1, 2):
        hd, nsd = surface_scores(pred == value, ref == value, spacing, 1.0)
        assert found["hd95"][value - 1] == pytest.approx(hd)
        assert found["nsd"][value - 1] == pytest.approx(nsd)
    assert found["dice"][0] == pytest.approx(2 * 48 / 128)
    assert found["hd95"][2] == pytest.approx(image_diagonal(pred.shape, spacing))
    assert found["nsd"][2] == 0.0 and found["dice"][2] == 0.0
    assert all(math.isnan(found[m][3]) for m in found)


def test_bad_arguments() -> None:
    mask = np.ones((3, 3, 3), bool)
    with pytest.raises(ValueError, match="shape"):
        surface_scores(mask, mask[:2], (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        surface_scores(mask, mask, (1, 1))
    with pytest.raises(ValueError, match="spacing"):
        surface_scores(mask, mask, (1, 0, 1))
    with pytest.raises(ValueError, match="tolerance"):
        surface_scores(mask, mask, (1, 1, 1), tolerance=-1)
    with pytest.raises(ValueError, match="metrics"):
        check_metrics(["dice", "hausdorff"])
    with pytest.raises(ValueError, match="metrics"):
        check_metrics([])
    with pytest.raises(ValueError, match="outside"):
        structure_scores(np.full((2, 2, 2), 3), np.zeros((2, 2, 2), int), 3, (1, 1, 1), ["hd95"])
    assert check_metrics(["NSD", "dice", "nsd"]) == ("nsd", "dice")
