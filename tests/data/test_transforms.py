"""CT preprocessing: HU windowing and its linear inverse; resampling inverted to the input grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Invertd

from segattn.data.transforms import (
    intensity_transform,
    normalize_preprocessing,
    preprocess_transforms,
)

WINDOW = (-1000.0, 1000.0)
HU = np.array([-3024, -1024, -1000, -850, -100, 0, 55, 90, 250, 999, 1000, 1500, 3071], np.float32)


def _oblique(spacing: tuple[float, float, float]) -> np.ndarray:
    angle = np.deg2rad(12.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ rotation @ np.diag(spacing)  # LPS-like
    affine[:3, 3] = [150.0, 120.0, -400.0]
    return affine


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_ct_window_is_linear_with_clipping_and_invertible() -> None:
    settings = normalize_preprocessing({"intensity": {"kind": "ct", "window": [-1000, 1000]}})
    assert settings["intensity"] == {"kind": "ct", "window": list(WINDOW)}
    transform = intensity_transform(settings)
    assert transform is not None
    hu = HU.copy()
    out = transform({"image": torch.from_numpy(hu)[None]})["image"][0].numpy()
    lo, hi = WINDOW
    np.testing.assert_allclose(out, np.clip((hu - lo) / (hi - lo), 0.0, 1.0), atol=1e-6)
    assert out.min() == 0.0 and out.max() == 1.0
    back = lo + out * (hi - lo)  # the linear map back
    inside = (hu >= lo) & (hu <= hi)
    np.testing.assert_allclose(back[inside], hu[inside], atol=1e-3)
    assert (back[~inside] == np.clip(hu[~inside], lo, hi)).all()  # clipped outside the window


@pytest.mark.parametrize("window", [[-1000, -1000], [1000, -1000], [0]])
def test_bad_window(window: list[float]) -> None:
    with pytest.raises(ValueError, match="window"):
        normalize_preprocessing({"intensity": {"kind": "ct", "window": window}})


def test_window_from_a_ct_file(tmp_path: Path) -> None:
    """The whole chain (load, orient, window) on an int16 HU volume."""
    data = np.resize(HU, (5, 4, 3)).astype(np.int16)
    path = _save(tmp_path / "ct.nii.gz", data, np.diag([0.8, 0.8, 2.5, 1.0]))
    settings = {"intensity": {"kind": "ct", "window": list(WINDOW)}}
    image = preprocess_transforms(settings, keys=("image",))({"image": str(path)})["image"]
    expected = np.clip((data.astype(np.float32) + 1000.0) / 2000.0, 0.0, 1.0)
    np.testing.assert_allclose(image[0].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("spacing", "agreement"), [([0.45, 0.45, 1.5], 1.0), ([1.5, 1.5, 1.5], 0.9)]
)
def test_label_resampled_for_3d_comes_back_on_the_anisotropic_grid(
    tmp_path: Path, spacing: list[float], agreement: float
) -> None:
    shape, affine = (20, 24, 9), _oblique((0.9, 0.9, 3.0))
    label = np.zeros(shape, np.uint8)
    label[3:12, 4:15, 2:6] = 1
    label[12:18, 10:20, 4:8] = 2
    image = (label * 100.0 - 50.0).astype(np.int16)
    files = {
        "image": str(_save(tmp_path / "img.nii.gz", image, affine)),
        "label": str(_save(tmp_path / "lab.nii.gz", label, affine)),
    }
    settings = {"spacing": spacing, "intensity": {"kind": "ct", "window": list(WINDOW)}}
    chain = preprocess_transforms(settings)
    data = chain(files)
    np.testing.assert_allclose(
        np.linalg.norm(data["label"].affine[:3, :3].numpy(), axis=0), spacing, atol=1e-4
    )
    assert tuple(data["label"].shape[1:]) != shape
    inverse = Invertd(keys="label", transform=chain, orig_keys="label", nearest_interp=True)
    back = inverse(dict(data))["label"]
    assert tuple(back.shape[1:]) == shape
    np.testing.assert_allclose(back.affine.numpy(), affine, atol=1e-4)
    restored = back[0].numpy().round().astype(np.uint8)
    # an exact divisor of the spacing restores every voxel; a coarser grid all but edges
    assert (restored == label).mean() >= agreement
    assert set(np.unique(restored)) == {0, 1, 2}
