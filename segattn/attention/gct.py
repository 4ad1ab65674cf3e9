"""Gated channel transformation: ``gct``.

Yang, Zhu, Wu, Yang, "Gated Channel Transformation for Visual Recognition", CVPR 2020,
https://arxiv.org/abs/1909.11519; authors' code https://github.com/z-x-yang/GCT.

Math (``"l2"`` mode, the paper's default), per sample, with sums over ALL spatial axes:

- embedding ``s_c = alpha_c * sqrt(sum_S x_c^2 + eps)``;
- channel normalisation ``n_c = gamma_c / sqrt(mean_c(s_c^2) + eps)``;
- gate ``g_c = 1 + tanh(s_c * n_c + beta_c)``, output ``x * g``.

``alpha = 1``, ``gamma = 0``, ``beta = 0`` at initialisation, so the module starts as the
identity (``g = 1``); ``g`` stays in (0, 2). The ``"l1"`` mode of the authors' code
(``s_c = alpha_c * sum_S |x_c|``, ``n_c = gamma_c / (mean_c |s_c| + eps)``) is an option.

Weight decay: the authors train without weight decay on the gating bias ``beta`` (their README
and ``main.py``; ``gamma`` and ``alpha`` are decayed). :meth:`GatedChannelTransform.no_weight_decay`
lists those parameter names, timm-style, for optimiser set-up.

Departure from the code: the embedding is computed in float32 (then cast back), because a sum of
squares over a 3D volume overflows float16 under mixed precision (``128^3`` voxels of size 1
already exceed 65504).

Example:
    >>> import torch
    >>> gct = GatedChannelTransform(channels=16, spatial_dims=3)
    >>> x = torch.randn(2, 16, 5, 6, 7)
    >>> torch.equal(gct(x), x)  # identity at initialisation
    True
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from segattn.attention._gate import ChannelGate, as_channel_gate
from segattn.attention.registry import register
from segattn.layers import check_positive_int, check_spatial_dims, reduce_dims

__all__ = ["GatedChannelTransform"]

MODES = ("l2", "l1")


@register("gct", paper="Yang et al., CVPR 2020", url="https://arxiv.org/abs/1909.11519")
class GatedChannelTransform(ChannelGate):
    """Gated channel transformation for ``(N, C, *spatial)`` tensors in 1D, 2D or 3D.

    Parameters: ``3*C`` (``alpha``, ``gamma``, ``beta``, one per channel).

    Exactly the identity at initialisation (``gamma = 0``). Exclude ``beta`` from weight decay as
    the authors do: :meth:`no_weight_decay` returns its name.

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3 (the module works for any; validated for uniformity).
        mode: ``"l2"`` (paper) or ``"l1"`` (authors' code option) embedding.
        eps: the ``epsilon`` inside the square roots (1e-5 as in the authors' code).

    Raises:
        ValueError: non-positive ``channels``, bad ``spatial_dims``, unknown ``mode`` or
            non-positive ``eps``.

    Example:
        >>> import torch
        >>> gct = GatedChannelTransform(channels=8)
        >>> gct.gate(torch.randn(2, 8, 33, 37)).shape
        torch.Size([2, 8, 1, 1])
        >>> sorted(gct.no_weight_decay())
        ['beta']
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 2.0)

    def __init__(
        self, channels: int, spatial_dims: int = 2, mode: str = "l2", eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if not (isinstance(eps, int | float) and eps > 0):
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        self.mode = mode
        self.eps = float(eps)
        self.alpha = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def no_weight_decay(self) -> set[str]:
        """Names of parameters (relative to this module) to train without weight decay."""
        return {"beta"}

    def gate(self, x: Tensor) -> Tensor:
        """Channel gate ``1 + tanh(s * n + beta)``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, 1, ..., 1)`` with values in (0, 2), in ``x.dtype``.
        """
        dims = reduce_dims(x.ndim)
        xf = x.float()  # no copy for float32 input
        if self.mode == "l2":
            s = (xf.pow(2).sum(dim=dims) + self.eps).sqrt() * self.alpha
            norm = self.gamma / (s.pow(2).mean(dim=1, keepdim=True) + self.eps).sqrt()
        else:
            s = xf.abs().sum(dim=dims) * self.alpha
            norm = self.gamma / (s.abs().mean(dim=1, keepdim=True) + self.eps)
        g = 1.0 + torch.tanh(s * norm + self.beta)
        return as_channel_gate(g.to(x.dtype), x.ndim)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mode={self.mode!r}, spatial_dims={self.spatial_dims}"
