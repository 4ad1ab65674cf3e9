"""Coordinate attention: ``coord``.

Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
https://arxiv.org/abs/2103.02907; authors' code https://github.com/houqb/CoordAttention.

Math, for every spatial axis ``a`` (H and W in 2D; D, H and W in 3D):

- directional pool ``p_a = mean of x over every spatial axis except a``: ``(N, C, S_a)``;
- the strips are concatenated along their length and share one transform
  ``y = h_swish(norm(conv1x1(C -> mip)))``, then split back per axis;
- per-axis gate ``g_a = sigmoid(conv1x1_a(y_a))`` (``mip -> C``), varying along axis ``a`` only;
- ``out = x * prod_a g_a``.

``mip = max(min_channels, C // reduction)`` with ``reduction = 32`` and ``min_channels = 8``, as in
the authors' code. In 1D the only "other axes" are none, so the single gate is a full
per-position, per-channel gate.

Where we depart from the paper: the shared transform normalises with BatchNorm in the paper and
code; we default to ``norm="group"``, a GroupNorm with one group over the ``mip`` channels and
the whole strip of each sample (a per-sample layer norm). It trains at batch size 1, makes eval
independent of the batch, and, unlike a per-channel (instance-like) norm, keeps the relative
levels of the hidden channels, which carry the channel-attention signal. ``norm="batch"`` gives
the paper's layer.

Memory: ``forward`` multiplies by the axis gates with
:func:`segattn.attention.lean.gate_product`, which keeps ``x`` and the ``(N, C, S_a)`` strips for
the backward pass instead of the partial products ``x * g_1``, ``x * g_1 * g_2``.

Example:
    >>> import torch
    >>> coord = CoordinateAttention(channels=16, spatial_dims=3)
    >>> [g.shape for g in coord.axis_gates(torch.randn(2, 16, 5, 6, 7))]
    [torch.Size([2, 16, 5, 1, 1]), torch.Size([2, 16, 1, 6, 1]), torch.Size([2, 16, 1, 1, 7])]
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from segattn.attention._gate import GatedAttention
from segattn.attention.lean import gate_product
from segattn.attention.registry import register
from segattn.layers import check_spatial_dims, hidden_channels, norm_layer

__all__ = ["CoordinateAttention"]


@register("coord", paper="Hou et al., CVPR 2021", url="https://arxiv.org/abs/2103.02907")
class CoordinateAttention(GatedAttention):
    """Coordinate attention: one gate per spatial axis, multiplied, for 1D, 2D and 3D inputs.

    Parameters: ``C*mip + mip`` (shared 1x1 conv with bias) ``+ 2*mip`` (norm scale and shift;
    none with ``norm="none"``) ``+ d*(mip*C + C)`` (one 1x1 conv with bias per axis), where
    ``mip = max(C // reduction, min_channels)`` and ``d = spatial_dims``.

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3; the number of directional pools and gates.
        reduction: ``r`` in ``mip = C // r`` (32 in the authors' code).
        min_channels: lower bound of ``mip`` (8 in the authors' code).
        norm: norm of the shared transform, a ``segattn.layers.norm_layer`` name; ``"group"``
            (default) is one group per sample, ``"batch"`` is the paper's BatchNorm.

    Raises:
        ValueError: non-positive ``channels``/``reduction``/``min_channels``, bad
            ``spatial_dims`` or unknown ``norm``.

    Example:
        >>> import torch
        >>> coord = CoordinateAttention(channels=8)
        >>> x = torch.randn(2, 8, 33, 37)
        >>> [g.shape for g in coord.axis_gates(x)]
        [torch.Size([2, 8, 33, 1]), torch.Size([2, 8, 1, 37])]
        >>> coord.gate(x).shape
        torch.Size([2, 8, 33, 37])
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        reduction: int = 32,
        min_channels: int = 8,
        norm: str | None = "group",
    ) -> None:
        super().__init__()
        self.mip = hidden_channels(channels, reduction, min_channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.channels = channels
        self.norm_name = "none" if norm is None else str(norm).lower()
        # Strips are (N, C, length) whatever spatial_dims is: 1D convs and norms throughout.
        self.conv = nn.Conv1d(channels, self.mip, kernel_size=1)
        self.norm = norm_layer(self.norm_name, 1, self.mip, groups=1)
        self.act = nn.Hardswish()
        self.axis_convs = nn.ModuleList(
            nn.Conv1d(self.mip, channels, kernel_size=1) for _ in range(spatial_dims)
        )

    def axis_gates(self, x: Tensor) -> list[Tensor]:
        """One gate per spatial axis, in axis order.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``spatial_dims`` tensors; the one for axis ``a`` has shape ``(N, C, 1, .., S_a, .., 1)``
            (it varies along axis ``a`` only), values in (0, 1).
        """
        n, c, *spatial = x.shape
        axes = list(range(2, x.ndim))
        strips = [
            x.mean(dim=[b for b in axes if b != a]) if len(axes) > 1 else x for a in axes
        ]  # each (N, C, S_a)
        shared = self.act(self.norm(self.conv(torch.cat(strips, dim=2))))
        gates = []
        for i, (part, conv) in enumerate(zip(shared.split(spatial, dim=2), self.axis_convs)):
            shape = [n, c] + [1] * len(spatial)
            shape[2 + i] = spatial[i]
            gates.append(torch.sigmoid(conv(part)).view(shape))
        return gates

    def gate(self, x: Tensor) -> Tensor:
        """Product of the per-axis gates.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, *spatial)`` with values in (0, 1); ``forward(x) == x * gate(x)``.
        """
        first, *rest = self.axis_gates(x)
        for g in rest:
            first = first * g
        return first

    def forward(self, x: Tensor) -> Tensor:
        """Rescale by every axis gate: ``x: (N, C, *spatial) -> (N, C, *spatial)``."""
        return gate_product(x, *self.axis_gates(x))

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, mip={self.mip}, norm={self.norm_name!r}, "
            f"spatial_dims={self.spatial_dims}"
        )
