"""The training samples' crop and augmentation (segattn.training.augment)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from segattn.training.augment import (
    RandomSample,
    affine_resample,
    augmentation_settings,
    random_transforms,
    rotation_matrix,
)

OFF = {"affine_prob": 0.0, "intensity_prob": 0.0, "noise_prob": 0.0}


def _sample(shape: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(1, *shape, generator=gen),
        "label": torch.randint(0, 4, (1, *shape), generator=gen).to(torch.uint8),
    }


@pytest.mark.parametrize("shape", [(9, 13), (7, 9, 11)])
def test_bilinear_resampling_equals_scipy(shape: tuple[int, ...]) -> None:
    x = torch.randn(1, *shape, dtype=torch.float64).float()
    angles = [0.3] if len(shape) == 2 else [0.2, -0.15, 0.1]
    matrix = rotation_matrix(angles) @ np.diag([1.1, 0.9, 1.05][: len(shape)])
    centre = (np.array(shape) - 1) / 2
    expected = ndimage.affine_transform(
        x[0].double().numpy(),
        matrix,
        offset=centre - matrix @ centre,
        order=1,
        mode="grid-constant",
        cval=0.0,
    )
    got = affine_resample(x, matrix, "bilinear")
    np.testing.assert_allclose(got[0].numpy(), expected, atol=2e-5)


def test_a_quarter_turn_moves_voxels_exactly() -> None:
    label = torch.arange(49, dtype=torch.uint8).reshape(1, 7, 7)
    out = affine_resample(label, rotation_matrix([math.pi / 2]), "nearest")
    assert out.dtype == torch.uint8
    # output p takes the input at centre + R (p - centre): (p0, p1) <- (6 - p1, p0)
    expected = torch.stack([label[0, 6 - p1, p0] for p0 in range(7) for p1 in range(7)])
    assert torch.equal(out[0].flatten(), expected)


def test_3d_rotation_matrix_is_a_rotation() -> None:
    r = rotation_matrix([0.4, -0.2, 1.1])
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        rotation_matrix([0.1, 0.2])


def test_a_sample_is_a_pure_function_of_its_seed() -> None:
    t = random_transforms(2, [8, 8], {"affine_prob": 1.0, "noise_prob": 1.0, "flip_axes": [0]})
    sample = _sample((10, 9))
    first = t.set_random_state(seed=5)(sample)
    t.set_random_state(seed=6)(sample)
    again = t.set_random_state(seed=5)(sample)
    other = t.set_random_state(seed=6)(sample)
    assert isinstance(first, dict) and isinstance(again, dict) and isinstance(other, dict)
    assert torch.equal(first["image"], again["image"])
    assert torch.equal(first["label"], again["label"])
    assert not torch.equal(first["image"], other["image"])


def test_crop_pads_symmetrically_and_leaves_the_input_alone() -> None:
    sample = _sample((5, 12))
    before = {k: v.clone() for k, v in sample.items()}
    t = random_transforms(2, [9, 12], OFF)
    out = t.set_random_state(seed=0)(sample)
    assert isinstance(out, dict)
    assert out["image"].shape == (1, 9, 12) and out["label"].dtype == torch.uint8
    # 4 rows of padding: 2 before, 2 after; the 12 columns fit, so no crop moves them
    assert torch.equal(out["image"][:, 2:7], sample["image"])
    assert not out["image"][:, :2].any() and not out["image"][:, 7:].any()
    assert all(torch.equal(sample[k], before[k]) for k in sample)


def test_crops_are_uniform_over_the_positions() -> None:
    sample = {"image": torch.arange(6.0).reshape(1, 6, 1), "label": torch.zeros(1, 6, 1)}
    t = random_transforms(2, [2, 1], OFF)
    starts = [int(t.set_random_state(seed=s)(sample)["image"][0, 0, 0]) for s in range(500)]
    counts = np.bincount(starts, minlength=5)
    assert counts.shape == (5,) and counts.min() > 70  # 100 expected per start


def test_off_means_only_the_crop() -> None:
    sample = _sample((8, 8, 8))
    t = random_transforms(3, None, {}, enabled=False)
    out = t.set_random_state(seed=3)(sample)
    assert isinstance(out, dict)
    assert torch.equal(out["image"], sample["image"]) and torch.equal(out["label"], sample["label"])


def test_labels_keep_their_values_under_the_affine() -> None:
    sample = _sample((12, 12))
    t = random_transforms(2, None, {**OFF, "affine_prob": 1.0})
    for seed in range(5):
        out = t.set_random_state(seed=seed)(sample)
        assert isinstance(out, dict)
        assert set(out["label"].unique().tolist()) <= set(range(4))
        assert not torch.equal(out["image"], sample["image"])


def test_parameters_follow_their_ranges() -> None:
    image = torch.ones(1, 4, 4)
    sample = {"image": image, "label": torch.zeros(1, 4, 4, dtype=torch.uint8)}
    settings = {**OFF, "intensity_prob": 1.0, "intensity_scale": 0.2, "intensity_shift": 0.0}
    t = random_transforms(2, None, settings)
    factors = []
    for s in range(300):
        out = t.set_random_state(seed=s)(sample)
        assert isinstance(out, dict)
        assert torch.all(out["image"] == out["image"][0, 0, 0])  # one factor per sample
        factors.append(float(out["image"][0, 0, 0]))
    assert 0.8 <= min(factors) < 0.83 and 1.17 < max(factors) <= 1.2


def test_foreground_crops_return_one_plain_sample_per_crop() -> None:
    sample = _sample((12, 12, 12))
    t = random_transforms(3, [6, 6, 6], {}, pos_fraction=1.0, num_samples=3)
    out = t.set_random_state(seed=0)(sample)
    assert isinstance(out, list) and len(out) == 3
    for piece in out:
        assert type(piece["image"]) is torch.Tensor and piece["image"].shape == (1, 6, 6, 6)
        assert type(piece["label"]) is torch.Tensor
    again = t.set_random_state(seed=0)(sample)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(out, again, strict=True))


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        augmentation_settings({"rotate": 3})
    with pytest.raises(ValueError):
        RandomSample(4, None)
    with pytest.raises(ValueError):
        RandomSample(2, [8, 8, 8])
    with pytest.raises(ValueError):
        RandomSample(2, None, {"rotate": 3})
