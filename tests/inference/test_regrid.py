"""Slab-wise inversion of orientation and resampling equals MONAI's whole-volume Invertd."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import oblique_affine, phantom, save_image
from monai.data import MetaTensor
from monai.transforms import Invertd

from segattn.data.transforms import plain_tensor, preprocess_transforms
from segattn.inference.regrid import Geometry, resample_slabs, shifted
from segattn.inference.slabs import tensor_slabs

SHAPE = (13, 16, 11)


def _flipped_affine() -> np.ndarray:
    aff = np.diag([-1.1, 0.8, -2.0, 1.0])
    aff[:3, 3] = [20.0, -10.0, 30.0]
    return aff


def _permuted_affine() -> np.ndarray:
    aff = np.zeros((4, 4))
    aff[0, 1], aff[1, 2], aff[2, 0], aff[3, 3] = -0.9, 1.3, -1.7, 1.0  # PIL-like storage
    aff[:3, 3] = [5.0, 6.0, -7.0]
    return aff


def _prepared(tmp_path: Path, affine: np.ndarray, spacing=None):  # type: ignore[no-untyped-def]
    src = save_image(tmp_path / "img.nii.gz", phantom(SHAPE), affine)
    chain = preprocess_transforms(
        {"orientation": "RAS", "spacing": spacing, "intensity": {"kind": "none"}}, keys=("image",)
    )
    data = chain({"image": str(src)})
    return chain, data


def _invert(chain, data, pred: torch.Tensor, nearest: bool) -> torch.Tensor:  # type: ignore[no-untyped-def]
    image = data["image"]
    meta = MetaTensor(
        pred, meta=dict(image.meta), applied_operations=list(image.applied_operations)
    )
    inverse = Invertd(keys="pred", transform=chain, orig_keys="image", nearest_interp=nearest)
    return plain_tensor(inverse({"image": image, "pred": meta})["pred"])


@pytest.mark.parametrize(
    "affine", [_flipped_affine(), _permuted_affine(), oblique_affine()], ids=["flip", "perm", "obl"]
)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_orientation_slabs_equal_invertd(tmp_path: Path, affine, axis: int) -> None:
    chain, data = _prepared(tmp_path, affine)
    geometry = Geometry.of(data["image"])
    assert geometry.input_shape == SHAPE and geometry.resample is None
    oriented = geometry.oriented_shape
    values = torch.arange(float(np.prod(oriented))).reshape(1, *oriented)  # every voxel distinct
    expected = _invert(chain, data, values, nearest=True)[0].numpy()
    got = np.full(SHAPE, -1.0, dtype=np.float32)
    for row in range(0, oriented[axis], 3):
        rows = min(3, oriented[axis] - row)
        box = tuple((row, row + rows) if d == axis else (0, oriented[d]) for d in range(3))
        slab = values[0].narrow(axis, row, rows)
        index, part = geometry.to_input(box, slab)
        got[index] = part.numpy()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("rows", [1, 4, 50])
@pytest.mark.parametrize("affine", [oblique_affine(), _permuted_affine()], ids=["obl", "perm"])
def test_resampling_slabs_equal_invertd(tmp_path: Path, affine, rows: int) -> None:
    chain, data = _prepared(tmp_path, affine, spacing=[1.3, 0.7, 1.9])
    geometry = Geometry.of(data["image"])
    assert geometry.resample is not None and geometry.model_shape != geometry.oriented_shape
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(3, *geometry.model_shape) * 3, 0)
    expected = _invert(chain, data, probs, nearest=False)
    got = torch.full((3, *SHAPE), -1.0)
    axis = 1
    slabs = resample_slabs(
        tensor_slabs(probs, axis=axis, rows=2),
        axis=axis,
        src_affine=geometry.model_affine,
        src_shape=geometry.model_shape,
        dst_affine=geometry.oriented_affine,
        dst_shape=geometry.oriented_shape,
        rows=rows,
        options=geometry.resample,
    )
    for row, part in slabs:
        box = tuple(
            (row, row + part.shape[1 + axis]) if d == axis else (0, n)
            for d, n in enumerate(geometry.oriented_shape)
        )
        index, part = geometry.to_input(box, part)
        got[(slice(None),) + index] = part
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_model_box_covers_interpolation_support(tmp_path: Path) -> None:
    _, data = _prepared(tmp_path, oblique_affine(), spacing=[2.0, 2.0, 2.0])
    g = Geometry.of(data["image"])
    full = tuple((0, n) for n in g.oriented_shape)
    assert g.model_box(full) == tuple((0, n) for n in g.model_shape)
    half = ((0, g.oriented_shape[0]), (0, g.oriented_shape[1] // 2), (0, g.oriented_shape[2]))
    lo, hi = g.model_box(half)[1]
    assert lo == 0 and hi < g.model_shape[1]


def test_shifted_affine_moves_the_origin_by_voxels() -> None:
    aff = oblique_affine()
    moved = shifted(aff, 1, 5)
    np.testing.assert_allclose(moved[:3, 3], aff[:3, 3] + 5 * aff[:3, 1])
