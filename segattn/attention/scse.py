"""Concurrent spatial and channel squeeze-and-excitation: ``scse``.

Roy, Navab, Wachinger, "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully
Convolutional Networks", MICCAI 2018, https://arxiv.org/abs/1803.02579; journal version
"Recalibrating Fully Convolutional Networks with Spatial and Channel 'Squeeze & Excitation'
Blocks", IEEE TMI 2019, https://arxiv.org/abs/1808.08127.

Math, with ``g_c`` the channel gate of ``cse`` and ``g_s`` the spatial gate of ``sse``:

- ``"add"``: ``x * g_c + x * g_s`` (MICCAI paper; the default);
- ``"max"``: ``max(x * g_c, x * g_s)`` (authors' code and the journal version);
- ``"mul"``: ``x * g_c * g_s``.

Memory: the three aggregations run as custom autograd functions
(:mod:`segattn.attention.lean`) that keep only ``x``, ``g_c`` ``(N, C, 1, ...)`` and ``g_s``
``(N, 1, *spatial)`` for the backward pass and recompute the full-size products there; plain
autograd would also keep the broadcast sum ``g_c + g_s`` (``"add"``), both products (``"max"``) or
``x * g_c`` (``"mul"``), one or two more copies of the input.

Example:
    >>> import torch
    >>> scse = ChannelSpatialSqueezeExcitation(channels=8, spatial_dims=3, aggregation="max")
    >>> scse(torch.randn(2, 8, 17, 19, 21)).shape
    torch.Size([2, 8, 17, 19, 21])
"""

from __future__ import annotations

import torch
from torch import Tensor

from segattn.attention._gate import GatedAttention
from segattn.attention.lean import gate_max, gate_product
from segattn.attention.registry import register
from segattn.attention.spatial_gating import spatial_gated
from segattn.attention.spatial_se import SpatialSqueezeExcitation
from segattn.attention.squeeze_excitation import SqueezeExcitation

__all__ = ["AGGREGATIONS", "ChannelSpatialSqueezeExcitation"]

AGGREGATIONS = ("add", "max", "mul")


@register("scse", paper="Roy et al., MICCAI 2018", url="https://arxiv.org/abs/1803.02579")
class ChannelSpatialSqueezeExcitation(GatedAttention):
    """Concurrent channel (cSE) and spatial (sSE) recalibration, 1D/2D/3D.

    Parameters: ``2*C*h + h + C`` (channel branch) ``+ C + 1`` (spatial branch), with
    ``h = max(C // reduction, min_channels)``.

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3.
        reduction: channel-branch ratio; 2 as in the authors' code.
        min_channels: lower bound of the channel branch's hidden width.
        aggregation: ``"add"``, ``"max"`` or ``"mul"`` (see the module docstring).
        act: activation inside the channel branch.

    Raises:
        ValueError: unknown ``aggregation`` or invalid branch options.

    Example:
        >>> import torch
        >>> scse = ChannelSpatialSqueezeExcitation(channels=8)
        >>> scse(torch.randn(2, 8, 33, 37)).shape
        torch.Size([2, 8, 33, 37])
    """

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        reduction: int = 2,
        min_channels: int = 4,
        aggregation: str = "add",
        act: str = "relu",
    ) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {list(AGGREGATIONS)}, got {aggregation!r}"
            )
        self.aggregation = aggregation
        # factor applied to x: g_c + g_s for "add", g_c * g_s for "mul"; "max" picks a branch
        self.gate_range = (0.0, 2.0) if aggregation == "add" else (0.0, 1.0)
        self.gate_note = {
            "add": "x*g_c + x*g_s",
            "max": "max(x*g_c, x*g_s)",
            "mul": "x*g_c*g_s",
        }[aggregation]
        self.cse = SqueezeExcitation(
            channels, spatial_dims, reduction=reduction, min_channels=min_channels, act=act
        )
        self.sse = SpatialSqueezeExcitation(channels, spatial_dims)

    def channel_gate(self, x: Tensor) -> Tensor:
        """Channel gate ``g_c``: ``(N, C, *spatial) -> (N, C, 1, ..., 1)``, values in (0, 1)."""
        return self.cse.gate(x)

    def spatial_gate(self, x: Tensor) -> Tensor:
        """Spatial gate ``g_s``: ``(N, C, *spatial) -> (N, 1, *spatial)``, values in (0, 1)."""
        return self.sse.gate(x)

    def forward(self, x: Tensor) -> Tensor:
        """Recalibrate: ``x: (N, C, *spatial) -> (N, C, *spatial)``."""
        g_c = self.channel_gate(x)
        if self.aggregation == "add":
            # x*g_c + x*g_s as one product x*(g_c + g_s), the spatial gate computed inside: its
            # backward writes the input gradient in one buffer (segattn.attention.spatial_gating)
            return spatial_gated(x, self.sse.conv.weight, self.sse.conv.bias, channel_gate=g_c)
        g_s = self.spatial_gate(x)
        if self.aggregation == "max":
            return gate_max(x, g_c, g_s)
        return gate_product(x, g_c, g_s)

    def extra_repr(self) -> str:
        return f"aggregation={self.aggregation!r}"

    #: ``spatial_gate`` sees the block input ``x`` (both branches run in parallel)
    spatial_after_channel = False

    def gate(self, x: Tensor) -> Tensor:
        """The factor ``forward`` applies: ``forward(x) == x * gate(x)``.

        ``g_c + g_s`` (``"add"``), ``g_c * g_s`` (``"mul"``), or for ``"max"`` the branch
        factor that wins at each element, ``g_c`` where ``x*g_c >= x*g_s`` else ``g_s``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, *spatial)``, values in ``gate_range``.
        """
        g_c = self.channel_gate(x)
        g_s = self.spatial_gate(x)
        if self.aggregation == "add":
            return (g_c + g_s).expand_as(x)
        if self.aggregation == "max":
            return torch.where(x * g_c >= x * g_s, g_c, g_s)
        return (g_c * g_s).expand_as(x)
