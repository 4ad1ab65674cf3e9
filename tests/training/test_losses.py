"""Losses: voxel weights against a hand computation in 2D and 3D, median-frequency weights,
the weighted CE + Dice value against an independent computation, the loss registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from segattn.training.losses import (
    LOSS_KINDS,
    WeightedCEDiceLoss,
    boundary_mask,
    build_loss,
    median_frequency_weights,
    voxel_weights,
)


def test_voxel_weights_2d_by_hand() -> None:
    label = torch.tensor(
        [
            [0, 0, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 0, 0],
        ]
    )[None, None]
    w = torch.tensor([0.5, 4.0])
    # boundary: voxels with a face neighbour of another label
    edge = np.array(
        [
            [0, 1, 1, 0],
            [1, 1, 1, 1],
            [0, 1, 1, 0],
        ]
    )
    expected = np.where(label[0, 0].numpy() == 1, 4.0, 0.5) + 2.0 * edge
    out = voxel_weights(label, w)
    assert out.shape == (1, 1, 3, 4) and out.dtype == torch.float32
    np.testing.assert_allclose(out[0, 0].numpy(), expected)
    out = voxel_weights(label, w, boundary_weight=0.0)
    np.testing.assert_allclose(out[0, 0].numpy(), np.where(label[0, 0].numpy() == 1, 4.0, 0.5))


def test_voxel_weights_3d_match_a_loop_over_neighbours() -> None:
    """Random 3D labels, batch 2, odd sizes: compare with an explicit loop over the six faces."""
    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, 3, (2, 1, 5, 6, 7), generator=gen)
    label[:, :, :2] = 1  # a uniform slab: interior voxels without a boundary
    w = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    lab = label.numpy()
    expected = np.zeros(lab.shape)
    for n, _, x, y, z in np.ndindex(*lab.shape):
        here = lab[n, 0, x, y, z]
        edge = False
        for dx, dy, dz in [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]:
            a, b, c = x + dx, y + dy, z + dz
            if 0 <= a < 5 and 0 <= b < 6 and 0 <= c < 7 and lab[n, 0, a, b, c] != here:
                edge = True
        expected[n, 0, x, y, z] = w[here].item() + 2.0 * edge
    out = voxel_weights(label, w)
    assert out.dtype == torch.float64 and out.shape == label.shape
    np.testing.assert_allclose(out.numpy(), expected)
    assert (expected[:, :, 0] == 2.0).any()  # some voxels have no boundary bonus


def test_boundary_of_a_constant_label_is_empty_and_bad_shapes_raise() -> None:
    assert not boundary_mask(torch.ones(1, 1, 4, 5, dtype=torch.long)).any()
    with pytest.raises(ValueError, match=r"\(N, 1, \*spatial\)"):
        voxel_weights(torch.zeros(2, 3, 4, 4, dtype=torch.long), torch.ones(2))
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        voxel_weights(torch.full((1, 1, 2, 2), 2), torch.ones(2))


def test_median_frequency_weights_in_floating_point() -> None:
    counts = torch.tensor([900, 60, 30, 10, 0])
    freq = np.array([900, 60, 30, 10]) / 1000
    median = np.median(freq)  # 0.045: the mean of the two middle values
    expected = np.append(median / freq, 0.0)  # absent class: 0
    np.testing.assert_allclose(median_frequency_weights(counts).numpy(), expected)
    # integer division would give 0 for the frequent classes; floats do not
    assert median_frequency_weights(torch.tensor([3, 2, 2]))[0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        median_frequency_weights(torch.zeros(3))


def test_weighted_ce_dice_equals_an_independent_computation() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 9, 11, generator=gen)
    label = torch.randint(0, 3, (2, 1, 9, 11), generator=gen)
    cw = torch.tensor([0.2, 1.0, 3.0])
    loss = WeightedCEDiceLoss(3, class_weights=cw, boundary_weight=2.0)
    # independent: log-softmax by hand, batch soft Dice over classes
    logp = logits - logits.logsumexp(1, keepdim=True)
    ce = -logp.gather(1, label)
    weights = voxel_weights(label, cw)
    prob = logp.exp()
    onehot = F.one_hot(label[:, 0], 3).movedim(-1, 1).float()
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = 1 - ((2 * inter + 1e-5) / (denom + 1e-5)).mean()
    expected = (weights * ce).mean() + dice
    assert loss(logits, label).item() == pytest.approx(expected.item(), rel=1e-5)
    # the Dice term is MONAI's batch Dice with one softmax
    monai_dice = DiceLoss(to_onehot_y=True, softmax=True, batch=True)(logits, label)
    assert monai_dice.item() == pytest.approx(dice.item(), rel=1e-5)


def test_weighted_loss_weights_can_be_set_and_are_checked() -> None:
    loss = WeightedCEDiceLoss(3)
    assert torch.equal(loss.class_weights, torch.ones(3))
    loss.set_class_weights(median_frequency_weights(torch.tensor([70, 20, 10])))
    assert loss.class_weights[2].item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="3 entries"):
        loss.set_class_weights(torch.ones(4))
    with pytest.raises(ValueError, match="boundary_weight"):
        WeightedCEDiceLoss(3, boundary_weight=-1.0)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_every_loss_kind_takes_extras_and_backpropagates(kind: str) -> None:
    logits = torch.randn(2, 4, 7, 6, 5, requires_grad=True)
    label = torch.randint(0, 4, (2, 1, 7, 6, 5))
    value = build_loss(kind, 4)(logits, label, case=["a", "b"])
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_build_loss_rejects_unknown_kinds_and_options() -> None:
    with pytest.raises(ValueError, match="loss must be one of"):
        build_loss("dice_bce", 3)
    with pytest.raises(ValueError, match="takes no options"):
        build_loss("dice_ce", 3, boundary_weight=2.0)
    with pytest.raises(ValueError, match=r"no option\(s\) \['omega'\]"):
        build_loss("weighted_ce_dice", 3, omega=2.0)
