"""Densely connected blocks of QuickNAT and FC-DenseNet, 1D/2D/3D by ``spatial_dims``.

- :class:`QuickNATDenseBlock`: Roy et al., "QuickNAT", NeuroImage 2019,
  https://arxiv.org/abs/1801.04161 (the authors' ``DenseBlock`` in ai-med/nn-common-modules).
- :class:`DenseLayers`: Jégou et al., "The One Hundred Layers Tiramisu", CVPRW 2017,
  https://arxiv.org/abs/1611.09326 (Huang et al.'s DenseNet block, pre-activation layers).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from segattn.layers import act_layer, check_positive_int, conv_type, norm_layer

__all__ = ["DenseLayers", "QuickNATDenseBlock"]


class QuickNATDenseBlock(nn.Module):
    """``x -> [norm-act-conv k]`` twice with dense concatenation, then ``norm-act-conv 1x1``.

    ``y1 = conv_k(act(norm(x)))``, ``y2 = conv_k(act(norm([x, y1])))``,
    ``out = conv_1(act(norm([x, y1, y2])))``; every conv has ``out_channels`` filters and a bias.
    As in the authors' code one activation module serves the three layers (one PReLU slope per
    block), which keeps the parameter count equal to theirs.

    Parameters (2D, ``a`` = act parameters, 1 for PReLU): ``c*F*k^2 + (c+F)*F*k^2 + (c+2F)*F +
    3F`` (convs) ``+ 2*(3c + 3F)`` (batch norms) ``+ a``, with ``c = in_channels``, ``F =
    out_channels``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels ``c``.
        out_channels: filters ``F`` of every conv.
        kernel_size: odd size of the first two convs (the authors' 5).
        norm: normalisation name (the authors': batch).
        act: activation name (the authors': prelu).

    Example:
        >>> import torch
        >>> block = QuickNATDenseBlock(3, 2, 8)
        >>> block(torch.randn(2, 2, 5, 6, 7)).shape
        torch.Size([2, 8, 5, 6, 7])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 5,
        norm: str | None = "batch",
        act: str | None = "prelu",
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        conv = conv_type(spatial_dims)
        c, f, pad = in_channels, out_channels, kernel_size // 2
        self.norm1 = norm_layer(norm, spatial_dims, c)
        self.conv1 = conv(c, f, kernel_size, padding=pad)
        self.norm2 = norm_layer(norm, spatial_dims, c + f)
        self.conv2 = conv(c + f, f, kernel_size, padding=pad)
        self.norm3 = norm_layer(norm, spatial_dims, c + 2 * f)
        self.conv3 = conv(c + 2 * f, f, 1)
        # not in place: with norm "none" the activation would overwrite x, which is concatenated
        self.act = act_layer(act, inplace=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x: (N, in_channels, *spatial) -> (N, out_channels, *spatial)``."""
        y1 = self.conv1(self.act(self.norm1(x)))
        x1 = torch.cat([x, y1], dim=1)
        y2 = self.conv2(self.act(self.norm2(x1)))
        x2 = torch.cat([x1, y2], dim=1)
        return self.conv3(self.act(self.norm3(x2)))


class DenseLayer(nn.Sequential):
    """One FC-DenseNet layer: ``norm -> act -> conv3x3 (growth_rate filters) -> dropout``."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        growth_rate: int,
        dropout: float,
        norm: str | None,
        act: str | None,
    ) -> None:
        super().__init__(
            norm_layer(norm, spatial_dims, in_channels),
            act_layer(act, inplace=False),
            conv_type(spatial_dims)(in_channels, growth_rate, 3, padding=1),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )


class DenseLayers(nn.Module):
    """A DenseNet block: ``num_layers`` layers, each reading the concatenation of the block input
    and every earlier layer's output.

    ``forward`` returns both the whole concatenation ``[x, y1, ..., yn]`` (``in_channels +
    num_layers * growth_rate`` channels; the down path and the last up block keep it) and the new
    maps ``[y1, ..., yn]`` alone (``num_layers * growth_rate``; the bottleneck and the up path
    upsample only these, as in the Tiramisu, to keep the width in check).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        num_layers: layers ``n``.
        growth_rate: filters ``k`` per layer.
        dropout: dropout after every conv (the Tiramisu's 0.2).
        norm: normalisation name.
        act: activation name.

    Example:
        >>> import torch
        >>> full, new = DenseLayers(2, 8, num_layers=3, growth_rate=4)(torch.randn(2, 8, 9, 11))
        >>> full.shape, new.shape
        (torch.Size([2, 20, 9, 11]), torch.Size([2, 12, 9, 11]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_layers: int,
        growth_rate: int,
        dropout: float = 0.2,
        norm: str | None = "batch",
        act: str | None = "relu",
    ) -> None:
        super().__init__()
        check_positive_int("num_layers", num_layers)
        check_positive_int("growth_rate", growth_rate)
        self.layers = nn.ModuleList(
            DenseLayer(spatial_dims, in_channels + i * growth_rate, growth_rate, dropout, norm, act)
            for i in range(num_layers)
        )
        self.out_channels = in_channels + num_layers * growth_rate
        self.new_channels = num_layers * growth_rate

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x: (N, C, *spatial)`` -> ``(N, C + n*k, *spatial)`` and ``(N, n*k, *spatial)``."""
        new = []
        for layer in self.layers:
            y = layer(x)
            new.append(y)
            x = torch.cat([x, y], dim=1)
        return x, torch.cat(new, dim=1)
