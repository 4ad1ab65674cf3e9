"""Spatial squeeze-and-excitation: ``sse``.

Roy, Navab, Wachinger, "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully
Convolutional Networks", MICCAI 2018, https://arxiv.org/abs/1803.02579.

Math: ``x * sigmoid(conv1x1(x))`` where the 1x1(x1) convolution maps ``C -> 1`` channel, so every
position gets one weight shared by all channels.

Example:
    >>> import torch
    >>> sse = SpatialSqueezeExcitation(channels=8, spatial_dims=3)
    >>> sse(torch.randn(2, 8, 17, 19, 21)).shape
    torch.Size([2, 8, 17, 19, 21])
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from segattn.attention._gate import GatedAttention
from segattn.attention.registry import register
from segattn.attention.spatial_gating import spatial_gate_of, spatial_gated
from segattn.layers import check_positive_int, conv_type

__all__ = ["SpatialSqueezeExcitation"]


@register("sse", paper="Roy et al., MICCAI 2018", url="https://arxiv.org/abs/1803.02579")
class SpatialSqueezeExcitation(GatedAttention):
    """Spatial squeeze-and-excitation for ``(N, C, *spatial)`` tensors in 1D, 2D or 3D.

    Parameters: ``C + 1`` (one 1x1 convolution ``C -> 1`` with bias).

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3; picks the convolution.

    Raises:
        ValueError: non-positive ``channels`` or bad ``spatial_dims``.

    Example:
        >>> import torch
        >>> sse = SpatialSqueezeExcitation(channels=8)
        >>> sse.gate(torch.randn(2, 8, 33, 37)).shape
        torch.Size([2, 1, 33, 37])
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, channels: int, spatial_dims: int = 2) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.spatial_dims = spatial_dims
        self.conv = conv_type(spatial_dims)(channels, 1, kernel_size=1)

    def gate(self, x: Tensor) -> Tensor:
        """Spatial gate ``sigmoid(conv1x1(x))``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, 1, *spatial)`` with values in (0, 1).
        """
        return spatial_gate_of(x, self.conv.weight, self.conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Recalibrate: ``x: (N, C, *spatial) -> (N, C, *spatial)``, ``x * gate(x)``, with the
        fused backward pass of :func:`segattn.attention.spatial_gating.spatial_gated`."""
        return spatial_gated(x, self.conv.weight, self.conv.bias)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, spatial_dims={self.spatial_dims}"
