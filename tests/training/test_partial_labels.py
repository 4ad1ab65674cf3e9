"""Unannotated structures: the marginal loss and the validation Dice, against hand computation."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from monai.losses import DiceLoss

from segattn.training import SegDataModule, SegmentationSystem
from segattn.training.partial_labels import (
    annotated_mask,
    mask_unannotated_dice,
    merge_unannotated,
)

# Two voxels, classes (background, A, B); B is not annotated in this case.
# voxel 0 labelled background, p = (0.5, 0.2, 0.3); voxel 1 labelled A, p = (0.1, 0.6, 0.3)
PROBS = torch.tensor([[0.5, 0.1], [0.2, 0.6], [0.3, 0.3]]).view(1, 3, 1, 2)
LABEL = torch.tensor([0, 1]).view(1, 1, 1, 2)
ANNOTATED = torch.tensor([[True, True, False]])

# By hand. CE: background voxel -> -log(p_bg + p_B) = -log(0.8); A voxel -> -log(0.6).
CE = (-math.log(0.8) - math.log(0.6)) / 2
# Dice (batch, smooth 1e-5) on the merged probabilities (0.8, 0.2, 0) and (0.4, 0.6, 0):
# background 2 * 0.8 / (1.2 + 1); A 2 * 0.6 / (0.8 + 1); B has no prediction and no target
# (loss (0 + s) / (0 + s) -> 0).
DICE = ((1 - 1.6 / 2.2) + (1 - 1.2 / 1.8) + 0.0) / 3


def test_merged_softmax_is_the_marginal_distribution() -> None:
    logits = PROBS.log() + 0.7  # any shift: softmax is invariant
    merged = merge_unannotated(logits, ANNOTATED)
    expected = torch.tensor([[0.8, 0.4], [0.2, 0.6], [0.0, 0.0]]).view(1, 3, 1, 2)
    torch.testing.assert_close(merged.softmax(1), expected, atol=1e-6, rtol=0)
    assert torch.isfinite(merged).all()


@pytest.mark.parametrize(("kind", "expected"), [("dice_ce", DICE + CE), ("dice", DICE), ("ce", CE)])
def test_every_loss_kind_matches_the_hand_computation(kind: str, expected: float) -> None:
    system = SegmentationSystem(spatial_dims=2, num_classes=3, features=[4, 8], loss=kind)
    logits = PROBS.log()
    assert float(system._loss(logits, LABEL, ANNOTATED)) == pytest.approx(expected, abs=1e-5)
    # deep supervision: the same merge on every output
    assert float(system._loss([logits, logits], LABEL, ANNOTATED)) == pytest.approx(
        expected, abs=1e-5
    )
    # without the mask the background voxel's probability of B counts as an error
    assert float(system._loss(logits, LABEL)) > expected + 0.05


def test_ce_gradient_reaches_unannotated_logits_through_background_only() -> None:
    logits = PROBS.log().requires_grad_()
    ce = torch.nn.functional.cross_entropy(merge_unannotated(logits, ANNOTATED), LABEL[:, 0])
    ce.backward()
    grad = logits.grad[0, :, 0]  # (classes, voxels)
    p = PROBS[0, :, 0]
    # d/dz_B of -log(p_bg + p_B) = p_B - p_B / (p_bg + p_B); of -log(p_A) = p_B; mean over 2
    assert float(grad[2, 0]) == pytest.approx((0.3 - 0.3 / 0.8) / 2, abs=1e-6)
    assert float(grad[2, 1]) == pytest.approx(float(p[2, 1]) / 2, abs=1e-6)


def test_batch_dice_scores_a_channel_only_on_samples_that_annotate_it() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 7)
    label = torch.randint(0, 3, (2, 1, 5, 7))
    label[0][label[0] == 2] = 0  # sample 0 does not annotate class 2
    annotated = torch.tensor([[True, True, False], [True, True, True]])
    dice = DiceLoss(to_onehot_y=True, softmax=True, batch=True, reduction="none")
    per_channel = dice(merge_unannotated(logits, annotated), label).reshape(-1)
    alone = dice(logits[1:], label[1:]).reshape(-1)  # sample 1 by itself
    assert float(per_channel[2]) == pytest.approx(float(alone[2]), abs=1e-6)
    # fully annotated: the logits are returned unchanged
    assert merge_unannotated(logits, torch.ones(2, 3, dtype=torch.bool)) is logits


def test_validation_dice_is_nan_for_unannotated_structures() -> None:
    dice = torch.tensor([0.5, 0.0, 0.25], dtype=torch.float64)
    out = mask_unannotated_dice(dice, torch.tensor([True, True, False, True]))
    assert out[0] == 0.5 and math.isnan(float(out[1])) and out[2] == 0.25
    assert mask_unannotated_dice(dice, None) is dice


def test_mask_from_names_and_bad_arguments() -> None:
    mask = annotated_mask(["background", "liver", "spleen"], ["spleen"])
    assert mask.tolist() == [True, True, False]
    with pytest.raises(ValueError):
        annotated_mask(["background", "liver"], ["background"])
    with pytest.raises(ValueError):
        annotated_mask(["background", "liver"], ["kidney"])
    with pytest.raises(ValueError):
        merge_unannotated(PROBS.log(), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError):
        merge_unannotated(PROBS.log(), torch.tensor([[False, True, True]]))


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_datamodule_batches_carry_the_annotated_mask(
    tiny_malc: Path, tmp_path: Path, mode: str
) -> None:
    root = tmp_path / "partial"
    shutil.copytree(tiny_malc, root)
    spec = json.loads((root / "dataset.json").read_text())
    names = list(spec["labels"])
    cases = sorted(p.name.split(".")[0] for p in (root / "labelsTr").iterdir())
    spec["missing_labels"] = {case: [names[2]] for case in cases}
    (root / "dataset.json").write_text(json.dumps(spec))
    extra = {"patch_size": [16, 16, 16], "samples_per_volume": 2} if mode == "3d" else {}
    dm = SegDataModule(str(root), mode=mode, batch_size=4, augment=False, **extra)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    expected = torch.ones(4, len(names), dtype=torch.bool)
    expected[:, 2] = False
    assert torch.equal(batch["annotated"], expected)
    val = next(iter(dm.val_dataloader()))
    assert val["annotated"].shape == (1, len(names)) and not bool(val["annotated"][0, 2])
    # the system scores the unannotated structure as NaN (not a miss) in validation
    system = SegmentationSystem.for_data(dm, features=[4, 8])
    with torch.no_grad():
        system._shared_step(val, "val")
    [dice] = system._val_dice
    assert math.isnan(float(dice[1])) and not math.isnan(float(dice[0]))
    assert math.isfinite(float(system._loss(system.net(batch["image"]), batch["label"], expected)))
