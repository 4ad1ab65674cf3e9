"""Whole-volume forward passes shared by validation and the Predictor."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.inferers import sliding_window_inference
from torch import Tensor


def predict_volume(
    net: Callable[[Tensor], Tensor],
    image: Tensor,
    *,
    mode: str,
    slice_axis: int | None = None,
    patch_size: Sequence[int] | None = None,
    slice_batch: int = 16,
    sw_batch_size: int = 4,
    overlap: float = 0.5,
) -> Tensor:
    """Logits of a whole preprocessed volume.

    Args:
        net: maps ``(B, C, *patch)`` to ``(B, K, *patch)`` logits (eval mode).
        image: ``(C, X, Y, Z)`` preprocessed volume.
        mode: ``"2d"``: slices along ``slice_axis`` in batches of ``slice_batch``, re-stacked;
            ``"3d"``: MONAI sliding window over ``patch_size`` with Gaussian blending.
        slice_axis: spatial axis (0, 1, 2) of the 2D slices.
        patch_size: 3D window; ``None`` runs the whole volume at once.
        slice_batch: slices per forward pass in 2D.
        sw_batch_size: windows per forward pass in 3D.
        overlap: 3D window overlap in [0, 1).

    Returns:
        ``(K, X, Y, Z)`` logits on the device of ``image``.
    """
    if image.ndim != 4:
        raise ValueError(f"expected a (C, X, Y, Z) volume, got shape {tuple(image.shape)}")
    if mode == "2d":
        if slice_axis not in (0, 1, 2):
            raise ValueError(f"2d mode needs slice_axis 0, 1 or 2, got {slice_axis!r}")
        slices = torch.movedim(image, 1 + slice_axis, 0)  # (S, C, a, b)
        out = [net(slices[i : i + slice_batch]) for i in range(0, slices.shape[0], slice_batch)]
        return torch.movedim(torch.cat(out, 0), 0, 1 + slice_axis)  # (K, X, Y, Z)
    if mode == "3d":
        batch = image.unsqueeze(0)
        if patch_size is None:
            return net(batch)[0]
        logits = sliding_window_inference(
            batch,
            roi_size=list(patch_size),
            sw_batch_size=sw_batch_size,
            predictor=net,
            overlap=overlap,
            mode="gaussian",
        )
        assert isinstance(logits, Tensor)
        return logits[0]
    raise ValueError(f"mode must be '2d' or '3d', got {mode!r}")
