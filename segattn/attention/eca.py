"""Efficient channel attention: ``eca``.

Wang, Wu, Zhu, Wang, Zuo, Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional
Neural Networks", CVPR 2020, https://arxiv.org/abs/1910.03151; authors' code
https://github.com/BangguWu/ECANet.

Math: ``x * sigmoid(conv1d_k(GAP(x)))`` where the 1D convolution (one input and one output
channel, no bias, zero padding) slides along the channel axis of the pooled ``(N, C)`` vector, so
each channel's weight depends on its ``k`` neighbours.

Kernel size: the paper chooses it from the width, ``k = odd(|(log2(C) + b) / gamma|)`` with
``gamma = 2`` and ``b = 1`` (``odd`` rounds an even value up to the next odd one); the authors'
code uses a fixed ``k = 3``. We follow the paper by default (``kernel_size=None``); pass
``kernel_size=3`` for the code. Both give 3 for widths 8..127; the paper gives 1 below 8 and 5
for 128..2047.

Example:
    >>> import torch
    >>> eca = EfficientChannelAttention(channels=128, spatial_dims=3)
    >>> eca.kernel_size
    5
    >>> eca(torch.randn(2, 128, 3, 4, 5)).shape
    torch.Size([2, 128, 3, 4, 5])
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from segattn.attention._gate import ChannelGate, as_channel_gate
from segattn.attention.registry import register
from segattn.layers import check_positive_int, check_spatial_dims, reduce_dims

__all__ = ["EfficientChannelAttention", "adaptive_kernel_size"]


def adaptive_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """ECA's kernel size for ``channels``: ``t = int(|(log2(C) + b) / gamma|)``, made odd.

    Args:
        channels: width ``C`` (positive).
        gamma: divisor of the paper's mapping (2).
        b: offset of the paper's mapping (1).

    Returns:
        ``t`` if it is odd, else ``t + 1`` (so at least 1).

    Example:
        >>> [adaptive_kernel_size(c) for c in (1, 4, 16, 64, 128, 1024, 2048)]
        [1, 1, 3, 3, 5, 5, 7]
    """
    check_positive_int("channels", channels)
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma!r}")
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


@register("eca", paper="Wang et al., CVPR 2020", url="https://arxiv.org/abs/1910.03151")
class EfficientChannelAttention(ChannelGate):
    """Efficient channel attention for ``(N, C, *spatial)`` tensors in 1D, 2D or 3D.

    Parameters: ``k`` (the 1D kernel, no bias), where ``k = kernel_size`` or, by default, the
    paper's adaptive ``odd(|(log2(C) + b) / gamma|)``.

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3 (the module works for any; validated for uniformity).
        kernel_size: odd size of the channel convolution; ``None`` picks the paper's adaptive
            size from ``channels``, ``gamma`` and ``b``.
        gamma: divisor of the adaptive mapping (2 in the paper).
        b: offset of the adaptive mapping (1 in the paper).

    Raises:
        ValueError: non-positive ``channels``, an even or non-positive ``kernel_size``,
            non-positive ``gamma`` or bad ``spatial_dims``.

    Example:
        >>> import torch
        >>> eca = EfficientChannelAttention(channels=8, kernel_size=3)
        >>> eca.gate(torch.randn(2, 8, 33, 37)).shape
        torch.Size([2, 8, 1, 1])
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        kernel_size: int | None = None,
        gamma: float = 2.0,
        b: float = 1.0,
    ) -> None:
        super().__init__()
        check_positive_int("channels", channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if kernel_size is None:
            kernel_size = adaptive_kernel_size(channels, gamma, b)
        elif check_positive_int("kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size!r}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def gate(self, x: Tensor) -> Tensor:
        """Channel gate ``sigmoid(conv1d_k(GAP(x)))``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, 1, ..., 1)`` with values in (0, 1).
        """
        n, c = x.shape[:2]
        squeezed = x.mean(dim=reduce_dims(x.ndim)).view(n, 1, c)
        return as_channel_gate(torch.sigmoid(self.conv(squeezed)), x.ndim)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, kernel_size={self.kernel_size}, "
            f"spatial_dims={self.spatial_dims}"
        )
