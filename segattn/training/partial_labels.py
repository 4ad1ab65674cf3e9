"""Training on partially annotated label maps: structures not annotated in a case are unknown.

When ``dataset.json`` lists ``missing_labels`` for a case (e.g. VISCERAL volumes whose
gallbladder was not annotated), that case's label map says "background" where the missing
structure lies. Training it as background would punish a correct prediction. We use the
*marginal* formulation (as in Shi et al., "Marginal loss and exclusion loss for partially
supervised multi-organ segmentation", Medical Image Analysis 2021,
https://arxiv.org/abs/2007.03868): for a sample whose set of unannotated classes is ``M``, a
voxel labelled background means "background or one of ``M``", so its probability is
``p_bg + sum_{m in M} p_m``.

This is done once, on the logits, before any loss sees them (:func:`merge_unannotated`): the
background logit becomes ``logsumexp(z_bg, z_m for m in M)`` and each ``m`` in ``M`` a logit so low
that its softmax is exactly 0. Since the softmax normaliser is unchanged, ``softmax`` of the merged
logits is the merged distribution ``(p_bg + sum p_m, ..., 0 for m, ...)``. Every loss that starts
from ``softmax``/``log_softmax`` of the logits (Dice+CE, Dice, CE, weighted CE+Dice) then

- CE: scores a background-labelled voxel with ``-log(p_bg + sum_{m in M} p_m)``;
- Dice: computes the background Dice on the merged probability, and each ``m`` in ``M`` has
  prediction 0 and target 0 in that sample, so it adds nothing to the channel's sums (with batch
  Dice the channel is scored on the other samples only) and gets no gradient. A channel missing
  from *every* sample of the batch scores ``1 - smooth/smooth = 0`` loss (it is not removed from
  the channel mean, so the Dice term of such a batch is scaled by ``(K - |M|) / K``; the gradient
  direction is that of dropping the channel).

Gradients reach ``z_m`` only through the merged background, as the marginal likelihood implies.
Validation Dice of an unannotated structure is NaN for that case (:func:`mask_unannotated_dice`),
as :mod:`segattn.evaluation` scores it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

#: Merged-away classes get logit ``max(logits) - MASKED_LOGIT_GAP``: exp(-1e4) is exactly 0 in
#: float16/32/64, and the value stays finite so ``0 * log_softmax`` is 0, not NaN.
MASKED_LOGIT_GAP = 1.0e4


def annotated_mask(label_names: Sequence[str], missing: Sequence[str] = ()) -> Tensor:
    """``(K,)`` bool, False for the structures named in ``missing`` (background stays True).

    Raises:
        ValueError: ``missing`` names background or a structure that is not in ``label_names``.
    """
    names = list(label_names)
    unknown = sorted(set(missing) - set(names[1:]))
    if unknown:
        raise ValueError(f"missing labels {unknown} are not structures of {names[1:]}")
    return torch.tensor([name not in set(missing) for name in names], dtype=torch.bool)


def annotated_masks(
    cases: Sequence[str], label_names: Sequence[str], missing_labels: Mapping[str, Sequence[str]]
) -> list[Tensor]:
    """One :func:`annotated_mask` per case name (all True for cases not in ``missing_labels``)."""
    return [annotated_mask(label_names, missing_labels.get(case, ())) for case in cases]


def merge_unannotated(logits: Tensor, annotated: Tensor | None) -> Tensor:
    """Logits whose softmax merges each sample's unannotated classes into background.

    Args:
        logits: ``(N, K, *spatial)``, class 0 background.
        annotated: ``(N, K)`` bool (or 0/1), False where class ``k`` is not annotated in sample
            ``n``; ``None`` or all True returns ``logits`` itself.

    Returns:
        ``(N, K, *spatial)`` with ``softmax(out)[:, 0] = p_0 + sum_{m unannotated} p_m``,
        ``softmax(out)[:, m] = 0`` and the other probabilities unchanged.

    Raises:
        ValueError: ``annotated`` is not ``(N, K)`` or marks background as unannotated.
    """
    if annotated is None:
        return logits
    annotated = torch.as_tensor(annotated, device=logits.device).bool()
    if tuple(annotated.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"annotated must be (N, K) = {tuple(logits.shape[:2])}, got {tuple(annotated.shape)}"
        )
    if not bool(annotated[:, 0].all()):
        raise ValueError("background (class 0) cannot be unannotated")
    if bool(annotated.all()):
        return logits
    missing = (~annotated).view(*annotated.shape, *[1] * (logits.ndim - 2))
    into_background = missing.clone()
    into_background[:, 0] = True
    low = logits.detach().amax(dim=1, keepdim=True) - MASKED_LOGIT_GAP
    background = torch.logsumexp(logits.masked_fill(~into_background, float("-inf")), dim=1)
    merged = torch.where(missing, low, logits)
    return torch.cat([background.unsqueeze(1), merged[:, 1:]], dim=1)


def mask_unannotated_dice(dice: Tensor, annotated: Tensor | None) -> Tensor:
    """Foreground Dice ``(K - 1,)`` of one case with NaN where the structure is not annotated.

    Args:
        dice: ``(K - 1,)`` Dice of classes ``1..K-1`` (e.g. from
            :func:`segattn.metrics.dice_per_label`).
        annotated: ``(K,)`` bool of that case, or None (nothing masked).
    """
    if annotated is None:
        return dice
    keep = torch.as_tensor(annotated, device=dice.device).bool()[1:]
    return dice.masked_fill(~keep, float("nan"))
