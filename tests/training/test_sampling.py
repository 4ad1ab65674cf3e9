"""Class-balanced sampling: measured class frequencies of patch centres and of drawn slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segattn.training.class_sampling import RandClassBalancedCropd, class_balanced_slice_weights

SHAPE = (41, 37, 29)  # odd, non-cubic


def _phantom() -> torch.Tensor:
    """(1, 41, 37, 29) labels: a large organ 1, a medium organ 2, a tiny organ 3 of 8 voxels."""
    label = torch.zeros(1, *SHAPE, dtype=torch.uint8)
    label[0, 4:30, 5:30, 3:20] = 1
    label[0, 31:38, 10:20, 20:27] = 2
    label[0, 35:37, 30:32, 5:7] = 3
    return label


@pytest.mark.parametrize("random_fraction", [0.0, 0.25, 1.0])
def test_centre_class_frequencies_are_balanced_with_a_tiny_organ(random_fraction: float) -> None:
    label = _phantom()
    counts = torch.bincount(label.reshape(-1).long()).double()
    assert int(counts[3]) == 8
    crop = RandClassBalancedCropd(
        ["image", "label"], "label", [16, 16, 16], num_samples=200, random_fraction=random_fraction
    )
    crop.set_random_state(seed=0)
    centres = [c for _ in range(20) for c in crop.sample_centres(label)]  # 4000 patches
    classes = np.array([int(label[(0, *c)]) for c in centres])
    measured = np.bincount(classes, minlength=4) / len(classes)
    # a present class is drawn with probability (1 - f) / 3; a random voxel hits class k with
    # its volume share
    expected = random_fraction * (counts / counts.sum()).numpy()
    expected[1:] += (1.0 - random_fraction) / 3
    # 4000 draws: binomial standard deviation <= 0.008
    np.testing.assert_allclose(measured, expected, atol=0.03)
    if random_fraction < 1.0:
        assert measured[3] > 0.2  # vs 8 / 11101 foreground voxels = 0.0007 under "foreground"


def test_crops_contain_their_centres_and_copy_other_keys() -> None:
    label = _phantom()
    image = torch.arange(label.numel(), dtype=torch.float32).reshape(1, *SHAPE)
    size = [15, 16, 17]
    make = lambda: RandClassBalancedCropd(  # noqa: E731
        ["image", "label"], "label", size, num_samples=6, random_fraction=0.3
    )
    sampler, crop = make(), make()
    sampler.set_random_state(seed=4)
    crop.set_random_state(seed=4)
    centres = sampler.sample_centres(label)
    out = crop({"image": image, "label": label, "annotated": torch.ones(4, dtype=torch.bool)})
    assert len(out) == 6
    for centre, patch in zip(centres, out):
        start = crop.crop_start(centre, SHAPE)
        assert tuple(patch["image"].shape) == (1, *size)
        assert all(b <= c < b + s for b, c, s in zip(start, centre, size))
        window = tuple(slice(b, b + s) for b, s in zip(start, size))
        assert torch.equal(patch["label"], label[(slice(None), *window)])
        assert torch.equal(patch["image"], image[(slice(None), *window)])
        assert torch.equal(patch["annotated"], torch.ones(4, dtype=torch.bool))


def test_no_foreground_falls_back_to_random_centres() -> None:
    crop = RandClassBalancedCropd(["label"], "label", [4, 4, 4], num_samples=200)
    crop.set_random_state(seed=1)
    centres = np.array(crop.sample_centres(torch.zeros(1, 9, 8, 7, dtype=torch.uint8)))
    assert centres.min() == 0 and (centres.max(0) == [8, 7, 6]).all()


def test_2d_slice_weights_equal_the_sampling_process() -> None:
    """Weights vs. an independent enumeration of: volume, then class, then voxel -> its slice."""
    rng = np.random.default_rng(0)
    labels = [torch.zeros(1, 7, 6, 5, dtype=torch.uint8)]
    labels[0][0, 2:5, 1:4, 1:3] = 1
    labels[0][0, 6, 5, 4] = 3  # one voxel
    labels.append(torch.from_numpy(rng.integers(0, 3, (1, 5, 9, 4)).astype(np.uint8)))
    labels.append(torch.zeros(1, 3, 4, 5, dtype=torch.uint8))  # no foreground
    f, axis = 0.3, 1
    weights = class_balanced_slice_weights(labels, axis, f).numpy()
    expected = []
    for label in labels:
        volume = np.moveaxis(label[0].numpy(), axis, 0)
        w = np.zeros(volume.shape[0])
        present = [k for k in np.unique(volume) if k > 0]
        for k in present:
            slices = np.nonzero(volume == k)[0]
            for s in slices:
                w[s] += (1 - f) / len(present) / len(slices)
        w += (f if present else 1.0) / volume.shape[0]
        expected.append(w / len(labels))
    np.testing.assert_allclose(weights, np.concatenate(expected), atol=1e-12)
    assert weights.sum() == pytest.approx(1.0)
    # the one-voxel class sits in slice 5 of volume 0: drawn at least (1 - f) / 2 / 3 of the time
    assert weights[5] >= (1 - f) / 2 / 3


@pytest.mark.parametrize(
    "kwargs",
    [{"random_fraction": 1.5}, {"num_samples": 0}, {"spatial_size": [0, 4, 4]}],
)
def test_bad_arguments(kwargs: dict) -> None:
    args = {"spatial_size": [4, 4, 4], **kwargs}
    with pytest.raises(ValueError):
        RandClassBalancedCropd(["image", "label"], "label", **args)
    with pytest.raises(ValueError):
        class_balanced_slice_weights([], 0, 2.0)
