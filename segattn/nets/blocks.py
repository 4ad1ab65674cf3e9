"""Convolution blocks shared by the encoder-decoder networks, 1D/2D/3D by ``spatial_dims``."""

from __future__ import annotations

from torch import Tensor, nn

from segattn.layers import act_layer, conv_type, norm_layer

__all__ = ["ConvBlock", "ConvNormAct"]


class ConvNormAct(nn.Sequential):
    """``conv(kernel_size, same padding) -> norm -> activation``.

    The convolution carries a bias only when ``norm`` is ``"none"`` (a norm's shift makes it
    redundant otherwise).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size.
        norm: ``"instance"``, ``"batch"``, ``"group"`` or ``"none"``.
        act: activation name from ``segattn.layers.act_layer``.

    Example:
        >>> import torch
        >>> layer = ConvNormAct(3, 1, 4)
        >>> layer(torch.randn(2, 1, 5, 6, 7)).shape
        torch.Size([2, 4, 5, 6, 7])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        norm: str | None = "instance",
        act: str | None = "leakyrelu",
    ) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        use_bias = norm is None or str(norm).lower() == "none"
        super().__init__(
            conv_type(spatial_dims)(
                in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=use_bias
            ),
            norm_layer(norm, spatial_dims, out_channels),
            act_layer(act),
        )


class ConvBlock(nn.Module):
    """Two ``conv3x3 -> norm -> act`` layers, with optional dropout between them.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: channels of both layers' outputs.
        norm: normalisation name.
        act: activation name.
        dropout: element-wise dropout probability after the first layer (0 disables it).

    Example:
        >>> import torch
        >>> block = ConvBlock(2, 3, 8)
        >>> block(torch.randn(2, 3, 33, 37)).shape
        torch.Size([2, 8, 33, 37])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        norm: str | None = "instance",
        act: str | None = "leakyrelu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.conv1 = ConvNormAct(spatial_dims, in_channels, out_channels, 3, norm, act)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = ConvNormAct(spatial_dims, out_channels, out_channels, 3, norm, act)

    def forward(self, x: Tensor) -> Tensor:
        """``x: (N, in_channels, *spatial) -> (N, out_channels, *spatial)``."""
        return self.conv2(self.dropout(self.conv1(x)))
