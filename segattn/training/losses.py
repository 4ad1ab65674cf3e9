"""Segmentation losses by name: ``dice_ce``, ``dice``, ``ce`` and the scSE/QuickNAT paper's
``weighted_ce_dice``.

``weighted_ce_dice`` is the loss of Roy et al., "QuickNAT", NeuroImage 2019,
https://arxiv.org/abs/1801.04161, used for scSE in Roy, Navab, Wachinger, MICCAI 2018,
https://arxiv.org/abs/1803.02579: a per-voxel weighted cross-entropy plus a soft Dice loss,
``L = mean_x w(x) * CE(x) + (1 - Dice)``, with ``w(x) = w_MF(label(x)) + omega0 * [x on a
label boundary]``, median-frequency class weights ``w_MF(l) = median_k f_k / f_l`` over the
training set and ``omega0 = 2`` (the authors' code).

Departures from the authors' code: the Dice term takes one softmax (theirs applies softmax twice)
and is batch Dice like segattn's other Dice losses (intersections summed over the batch); class
frequencies are computed in floating point (theirs use integer division); boundaries are label
changes between face neighbours along every spatial axis, in 2D and 3D alike; a class absent from
the training set gets weight 0 instead of an infinite one.

Every loss is an ``nn.Module`` called as ``loss(logits, label, **extras)`` with logits
``(N, K, *spatial)`` and integer labels ``(N, 1, *spatial)``; ``extras`` are accepted (and
ignored today) so per-case options can be added without changing the callers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss
from torch import Tensor, nn

__all__ = [
    "LOSS_KINDS",
    "WeightedCEDiceLoss",
    "boundary_mask",
    "build_loss",
    "median_frequency_weights",
    "voxel_weights",
]

LOSS_KINDS = ("dice_ce", "dice", "ce", "weighted_ce_dice")


def boundary_mask(label: Tensor) -> Tensor:
    """Voxels next to a different label along some spatial axis.

    Args:
        label: ``(N, 1, *spatial)`` integer labels.

    Returns:
        ``(N, 1, *spatial)`` bool, True where a face neighbour (``+-1`` along any spatial axis)
        holds another label; both sides of a label change are marked.

    Example:
        >>> boundary_mask(torch.tensor([[[0, 0, 1, 1]]])).int()
        tensor([[[0, 1, 1, 0]]], dtype=torch.int32)
    """
    edge = torch.zeros_like(label, dtype=torch.bool)
    for axis in range(2, label.ndim):
        n = label.shape[axis]
        if n < 2:
            continue
        change = label.narrow(axis, 1, n - 1) != label.narrow(axis, 0, n - 1)
        edge.narrow(axis, 1, n - 1).logical_or_(change)
        edge.narrow(axis, 0, n - 1).logical_or_(change)
    return edge


def voxel_weights(label: Tensor, class_weights: Tensor, boundary_weight: float = 2.0) -> Tensor:
    """The scSE/QuickNAT per-voxel loss weights ``class_weights[label] + boundary_weight *
    [on a label boundary]``.

    Args:
        label: ``(N, 1, *spatial)`` integer labels in ``0..K-1``.
        class_weights: ``(K,)`` weight per class, e.g. :func:`median_frequency_weights`.
        boundary_weight: ``omega0``, added on label boundaries (see :func:`boundary_mask`).

    Returns:
        ``(N, 1, *spatial)`` float weights (the dtype of ``class_weights`` if floating).

    Raises:
        ValueError: ``label`` is not ``(N, 1, ...)``, ``class_weights`` not 1-D, or a label is
            outside ``0..K-1``.

    Example:
        >>> label = torch.tensor([[[[0, 0, 1]]]])
        >>> voxel_weights(label, torch.tensor([1.0, 3.0]))
        tensor([[[[1., 3., 5.]]]])
    """
    if label.ndim < 3 or label.shape[1] != 1:
        raise ValueError(f"label must be (N, 1, *spatial), got {tuple(label.shape)}")
    if class_weights.ndim != 1:
        raise ValueError(f"class_weights must be (K,), got {tuple(class_weights.shape)}")
    label = label.long()
    if label.numel() and (label.min() < 0 or label.max() >= class_weights.numel()):
        raise ValueError(
            f"labels must lie in 0..{class_weights.numel() - 1}, got "
            f"{int(label.min())}..{int(label.max())}"
        )
    weights = class_weights if class_weights.is_floating_point() else class_weights.float()
    weights = weights.to(label.device)
    return weights[label] + boundary_weight * boundary_mask(label).to(weights.dtype)


def median_frequency_weights(counts: Tensor) -> Tensor:
    """Median-frequency class weights ``median_k f_k / f_l`` from voxel counts.

    Args:
        counts: ``(K,)`` voxels of every class over the training set.

    Returns:
        ``(K,)`` float64 weights; the median (the mean of the two middle values for an even
        number) runs over the classes that occur; classes that never occur get 0.

    Raises:
        ValueError: not 1-D, negative counts or no voxel at all.

    Example:
        >>> median_frequency_weights(torch.tensor([70, 20, 10]))
        tensor([0.2857, 1.0000, 2.0000], dtype=torch.float64)
    """
    counts = counts.double()
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"counts must be (K,) non-negative with some voxels, got {counts}")
    freq = counts / counts.sum()
    present = freq > 0
    median = torch.quantile(freq[present], 0.5)
    weights = torch.zeros_like(freq)
    weights[present] = median / freq[present]
    return weights


class WeightedCEDiceLoss(nn.Module):
    """``mean_x w(x) * CE(x) + (1 - soft Dice)`` with :func:`voxel_weights`.

    Args:
        num_classes: ``K``.
        class_weights: ``(K,)`` class weights; ``None`` starts with ones until
            :meth:`set_class_weights` (the training system sets median-frequency weights from
            the training set at setup).
        boundary_weight: ``omega0`` (the authors' 2).

    Example:
        >>> loss = WeightedCEDiceLoss(3, class_weights=[0.5, 1.0, 2.0])
        >>> loss(torch.randn(2, 3, 9, 11), torch.randint(0, 3, (2, 1, 9, 11))).shape
        torch.Size([])
    """

    class_weights: Tensor

    def __init__(
        self,
        num_classes: int,
        class_weights: Tensor | list[float] | None = None,
        boundary_weight: float = 2.0,
    ) -> None:
        super().__init__()
        if isinstance(boundary_weight, bool) or not isinstance(boundary_weight, (int, float)):
            raise ValueError(f"boundary_weight must be a number >= 0, got {boundary_weight!r}")
        if boundary_weight < 0:
            raise ValueError(f"boundary_weight must be a number >= 0, got {boundary_weight!r}")
        self.num_classes = int(num_classes)
        self.boundary_weight = float(boundary_weight)
        self.register_buffer("class_weights", torch.ones(self.num_classes))
        if class_weights is not None:
            self.set_class_weights(torch.as_tensor(class_weights))
        self.dice = DiceLoss(to_onehot_y=True, softmax=True, batch=True)

    def set_class_weights(self, weights: Tensor) -> None:
        """Replace the class weights (``(K,)``, e.g. :func:`median_frequency_weights`)."""
        if weights.shape != (self.num_classes,):
            raise ValueError(
                f"class_weights must have {self.num_classes} entries, got {tuple(weights.shape)}"
            )
        self.class_weights.copy_(weights.to(self.class_weights))

    def forward(self, logits: Tensor, label: Tensor, **extras: Any) -> Tensor:
        """``logits: (N, K, *spatial)``, ``label: (N, 1, *spatial)`` integers -> scalar."""
        weights = voxel_weights(label, self.class_weights.to(logits.dtype), self.boundary_weight)
        ce = F.cross_entropy(logits, label[:, 0].long(), reduction="none")
        return (weights[:, 0] * ce).mean() + self.dice(logits, label)


class _Wrapped(nn.Module):
    """A MONAI or torch loss ``f(logits, label)`` behind the ``(logits, label, **extras)`` call."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: Tensor, label: Tensor, **extras: Any) -> Tensor:
        return self.loss(logits, label)


class _CrossEntropy(nn.Module):
    """Cross-entropy taking a ``(N, 1, *spatial)`` integer label like MONAI's losses."""

    def forward(self, logits: Tensor, label: Tensor) -> Tensor:
        return F.cross_entropy(logits, label[:, 0].long())


def build_loss(kind: str, num_classes: int, **options: Any) -> nn.Module:
    """Build a loss by name.

    Args:
        kind: one of :data:`LOSS_KINDS`. ``dice_ce``: MONAI DiceCELoss; ``dice``: MONAI DiceLoss
            (both batch Dice: intersections summed over the batch, as nnU-Net does, so slices or
            patches without a structure do not each pull its Dice to zero); ``ce``:
            cross-entropy; ``weighted_ce_dice``: :class:`WeightedCEDiceLoss`.
        num_classes: ``K``.
        **options: ``weighted_ce_dice`` only: ``class_weights``, ``boundary_weight``.

    Returns:
        A module called as ``loss(logits (N, K, *spatial), label (N, 1, *spatial), **extras)``
        returning a scalar.

    Raises:
        ValueError: unknown kind, or options for a kind that takes none.
    """
    key = str(kind).strip().lower()
    if key not in LOSS_KINDS:
        raise ValueError(f"loss must be one of {list(LOSS_KINDS)}, got {kind!r}")
    if key == "weighted_ce_dice":
        unknown = sorted(set(options) - {"class_weights", "boundary_weight"})
        if unknown:
            raise ValueError(
                f"loss 'weighted_ce_dice' takes no option(s) {unknown}; "
                "its options: ['class_weights', 'boundary_weight']"
            )
        return WeightedCEDiceLoss(num_classes, **options)
    if options:
        raise ValueError(f"loss {key!r} takes no options, got {sorted(options)}")
    if key == "dice_ce":
        return _Wrapped(DiceCELoss(to_onehot_y=True, softmax=True, batch=True))
    if key == "dice":
        return _Wrapped(DiceLoss(to_onehot_y=True, softmax=True, batch=True))
    return _Wrapped(_CrossEntropy())
