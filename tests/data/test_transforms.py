"""CT preprocessing: HU windowing and its linear inverse; resampling inverted to the input grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Invertd

from segattn.data.transforms import (
    fit_ct_normalization,
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


def _ct_cases(seed: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        shape = (9 + i, 8, 7)
        image = rng.normal(-300.0, 400.0, shape).astype(np.float32)
        label = np.zeros(shape, np.uint8)
        label[2:6, 1:5, 1 + i % 3 : 5] = 1 + i % 2
        image[label > 0] = rng.normal(80.0 + 20 * i, 30.0, int((label > 0).sum()))
        image[0, 0, 0] = 3000.0  # an outlier outside the foreground
        cases.append((image[None], label[None]))
    return cases


def test_ct_fitted_values_are_the_foreground_percentiles_mean_and_std() -> None:
    cases = _ct_cases(0, 3)
    fitted = fit_ct_normalization(cases, percentiles=[0.5, 99.5])
    voxels = np.concatenate([img[lab > 0] for img, lab in cases]).astype(np.float64)
    assert fitted["kind"] == "ct_fitted" and fitted["percentiles"] == [0.5, 99.5]
    np.testing.assert_allclose(fitted["clip"], np.percentile(voxels, [0.5, 99.5]), rtol=1e-12)
    assert fitted["mean"] == pytest.approx(voxels.mean(), rel=1e-12)
    assert fitted["std"] == pytest.approx(voxels.std(), rel=1e-12)
    # a per-case cap draws a seeded subset of each case's foreground
    capped = fit_ct_normalization(cases, max_voxels_per_case=20, seed=3)
    assert capped == fit_ct_normalization(cases, max_voxels_per_case=20, seed=3)
    assert capped["mean"] != fitted["mean"]


def test_ct_fitted_transform_clips_and_z_scores() -> None:
    settings = normalize_preprocessing(
        {"intensity": {"kind": "ct_fitted", "clip": [-100, 300], "mean": 90.0, "std": 50.0}}
    )
    assert settings["intensity"]["percentiles"] == [0.5, 99.5]  # default filled in
    transform = intensity_transform(settings)
    assert transform is not None
    out = transform({"image": torch.from_numpy(HU.copy())[None]})["image"][0].numpy()
    expected = (np.clip(HU, -100.0, 300.0) - 90.0) / 50.0
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize(
    "intensity",
    [
        {"kind": "ct_fitted", "percentiles": [99.5, 0.5]},
        {"kind": "ct_fitted", "percentiles": [0.5, 101]},
        {"kind": "ct_fitted", "clip": [0, 1]},  # mean and std missing
        {"kind": "ct_fitted", "clip": [1, 0], "mean": 0.0, "std": 1.0},
        {"kind": "ct_fitted", "clip": [0, 1], "mean": 0.0, "std": 0.0},
        {"kind": "hu"},
    ],
)
def test_bad_ct_fitted_settings(intensity: dict) -> None:
    with pytest.raises(ValueError):
        normalize_preprocessing({"intensity": intensity})


def test_unfitted_ct_fitted_cannot_be_applied() -> None:
    settings = normalize_preprocessing({"intensity": {"kind": "ct_fitted"}})
    assert settings["intensity"] == {"kind": "ct_fitted", "percentiles": [0.5, 99.5]}
    with pytest.raises(ValueError, match="fitted"):
        intensity_transform(settings)
    with pytest.raises(ValueError, match="foreground"):
        fit_ct_normalization([(np.zeros((1, 3, 3, 3)), np.zeros((1, 3, 3, 3)))])
