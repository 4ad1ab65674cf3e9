"""Convolutional Block Attention Module: ``cbam``.

Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
https://arxiv.org/abs/1807.06521; authors' code https://github.com/Jongchan/attention-module.

Math, applied in sequence (channel first, then spatial):

- channel gate ``g_c = sigmoid(MLP(GAP(x)) + MLP(GMP(x)))``, one MLP shared by both pools;
- ``x' = x * g_c``;
- spatial gate ``g_s = sigmoid(conv_k([mean_c(x'), max_c(x')]))``, a ``2 -> 1`` convolution;
- ``out = x' * g_s = x * (g_c * g_s)``.

Where we depart from the paper or the authors' code:

- Channel-pool order: the paper stacks ``[avg, max]``, the authors' code ``[max, mean]``. We use
  the paper's order; the two differ only by a permutation of the spatial conv's two input
  channels, so they learn the same functions (swap ``spatial_conv.weight[:, 0]`` and ``[:, 1]`` to
  load the authors' weights), and no option is offered.
- Norm after the spatial conv: the paper has none, the authors' code has BatchNorm (conv without
  bias) whose scale is initialised to 0, so the spatial gate starts at 0.5 everywhere. The default
  ``spatial_norm="none"`` follows the paper (conv with bias): BatchNorm on a one-channel map fails
  in training at batch 1 on a 1x1x1 U-Net bottleneck. ``spatial_norm="batch"`` gives the authors'
  layer, including the zero-initialised scale.

Memory: the channel-gated ``x'`` is never kept for the backward pass. ``forward`` pools
``[mean_c, max_c]`` of ``x * g_c`` and multiplies ``x * g_c * g_s`` with custom autograd functions
(:mod:`segattn.attention.lean`) that keep ``x``, ``g_c``, ``g_s`` and the ``(N, 1, *spatial)``
channel maximum, and recompute ``x'`` in the backward pass; plain autograd keeps ``x'`` twice
over (for the pooling and for the product).

Example:
    >>> import torch
    >>> cbam = ConvolutionalBlockAttention(channels=16, spatial_dims=3, kernel_size=5)
    >>> cbam(torch.randn(2, 16, 5, 6, 7)).shape
    torch.Size([2, 16, 5, 6, 7])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from segattn.attention._gate import GatedAttention, as_channel_gate
from segattn.attention.lean import channel_gated_pool, gate_product
from segattn.attention.registry import register
from segattn.layers import (
    ChannelMLP,
    check_positive_int,
    check_spatial_dims,
    conv_type,
    hidden_channels,
    norm_layer,
    reduce_dims,
)

__all__ = ["ConvolutionalBlockAttention"]


@register("cbam", paper="Woo et al., ECCV 2018", url="https://arxiv.org/abs/1807.06521")
class ConvolutionalBlockAttention(GatedAttention):
    """CBAM: a channel gate followed by a spatial gate, for 1D, 2D and 3D inputs.

    Parameters: ``2*C*h + h + C`` (shared MLP with biases) ``+ 2*k**d + 1`` (spatial conv with
    bias), where ``h = max(C // reduction, min_channels)``, ``k = kernel_size`` and
    ``d = spatial_dims``. With ``spatial_norm="batch"`` the spatial part is ``2*k**d + 2`` (no
    conv bias; the norm's scale and shift).

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3.
        reduction: ratio ``r`` of the MLP's hidden width ``C // r`` (16 in the paper).
        min_channels: lower bound of the hidden width, so small ``C`` builds no empty layer.
        kernel_size: odd size of the spatial convolution (7 in the paper, in every dimension;
            in 3D that is ``2 * 7**3 = 686`` weights, still small next to a conv block).
        spatial_norm: ``"none"`` (paper) or a ``segattn.layers.norm_layer`` name such as
            ``"batch"`` (authors' code) applied after the spatial conv, scale initialised to 0.
        act: activation inside the MLP.

    Raises:
        ValueError: non-positive ``channels``/``reduction``/``min_channels``, an even or
            non-positive ``kernel_size``, bad ``spatial_dims``, unknown norm or activation.

    Example:
        >>> import torch
        >>> cbam = ConvolutionalBlockAttention(channels=8)
        >>> x = torch.randn(2, 8, 33, 37)
        >>> cbam.channel_gate(x).shape, cbam.spatial_gate(x).shape, cbam.gate(x).shape
        (torch.Size([2, 8, 1, 1]), torch.Size([2, 1, 33, 37]), torch.Size([2, 8, 33, 37]))
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    #: ``spatial_gate`` sees the channel-gated ``x * channel_gate(x)`` (see ``SpatialGated``)
    spatial_after_channel = True

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        reduction: int = 16,
        min_channels: int = 4,
        kernel_size: int = 7,
        spatial_norm: str | None = "none",
        act: str = "relu",
    ) -> None:
        super().__init__()
        self.hidden = hidden_channels(channels, reduction, min_channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if check_positive_int("kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size!r}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.mlp = ChannelMLP(channels, self.hidden, act=act)
        self.spatial_norm = "none" if spatial_norm is None else str(spatial_norm).lower()
        with_norm = self.spatial_norm != "none"
        self.spatial_conv = conv_type(spatial_dims)(
            2, 1, kernel_size, padding=kernel_size // 2, bias=not with_norm
        )
        self.norm = norm_layer(self.spatial_norm, spatial_dims, 1)
        scale = getattr(self.norm, "weight", None)
        if with_norm and isinstance(scale, torch.Tensor):
            nn.init.zeros_(scale)  # authors' code: the spatial gate starts at 0.5

    def channel_gate(self, x: Tensor) -> Tensor:
        """Channel gate ``sigmoid(MLP(GAP(x)) + MLP(GMP(x)))``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, 1, ..., 1)`` with values in (0, 1).
        """
        dims = reduce_dims(x.ndim)
        pooled = torch.stack((x.mean(dim=dims), x.amax(dim=dims)))  # (2, N, C): one MLP call
        return as_channel_gate(torch.sigmoid(self.mlp(pooled).sum(dim=0)), x.ndim)

    def spatial_gate(self, x: Tensor) -> Tensor:
        """Spatial gate ``sigmoid(conv([mean_c(x), max_c(x)]))`` of its input.

        ``gate`` and ``forward`` apply it to the channel-gated ``x * channel_gate(x)``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, 1, *spatial)`` with values in (0, 1).
        """
        pooled = torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)), dim=1)
        return self._spatial_gate_from_pooled(pooled)

    def _spatial_gate_from_pooled(self, pooled: Tensor) -> Tensor:
        """``sigmoid(norm(conv(pooled)))`` for ``pooled = [mean_c, max_c]``: ``(N, 2, *S)``."""
        return torch.sigmoid(self.norm(self.spatial_conv(pooled)))

    def gate(self, x: Tensor) -> Tensor:
        """Full gate ``g_c * g_s`` with ``g_s`` computed on ``x * g_c``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, *spatial)`` with values in (0, 1); ``forward(x) == x * gate(x)``.
        """
        g_c = self.channel_gate(x)
        return g_c * self.spatial_gate(x * g_c)

    def forward(self, x: Tensor) -> Tensor:
        """Channel then spatial recalibration: ``x: (N, C, *spatial) -> (N, C, *spatial)``."""
        g_c = self.channel_gate(x)
        # x' = x * g_c is never kept for backward: pooled from x and g_c, then x * g_c * g_s
        g_s = self._spatial_gate_from_pooled(channel_gated_pool(x, g_c))
        return gate_product(x, g_c, g_s)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, hidden={self.hidden}, kernel_size={self.kernel_size}, "
            f"spatial_norm={self.spatial_norm!r}, spatial_dims={self.spatial_dims}"
        )
