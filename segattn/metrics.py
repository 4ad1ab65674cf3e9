"""Dice per structure from a confusion count: exact, O(voxels) memory, no one-hot tensors."""

from __future__ import annotations

import torch
from torch import Tensor


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
