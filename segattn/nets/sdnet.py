"""SD-Net: a SegNet-like encoder-decoder with index unpooling and skip concatenation.

Roy, Conjeti, Sheet, Katouzian, Navab, Wachinger, "Error Corrective Boosting for Learning Fully
Convolutional Networks with Limited Data", MICCAI 2017, https://arxiv.org/abs/1705.00938;
attention after every block as in Roy, Navab, Wachinger, MICCAI 2018,
https://arxiv.org/abs/1803.02579 (which evaluates scSE in SD-Net on MALC).

Departures: ``depth``, ``kernel_size``, ``features``, norm and activation are options (the
paper: 3, 7x7, 64, batch norm, PReLU as in the issue's reading of the authors' blocks); the
convs carry no bias in front of a norm (its shift makes the bias redundant); inputs of any size
at least ``2**depth`` are padded to a multiple of ``2**depth`` and cropped back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segattn.attention import AttentionSpec
from segattn.layers import check_positive_int
from segattn.nets.base import attention_factory
from segattn.nets.blocks import ConvNormAct
from segattn.nets.registry import register
from segattn.nets.unpool import IndexUnpoolNet

__all__ = ["SDNet"]


@register("sdnet", paper="Roy et al., MICCAI 2017", url="https://arxiv.org/abs/1705.00938")
class SDNet(IndexUnpoolNet):
    """SD-Net for ``spatial_dims`` 1, 2 or 3.

    Encoder ``i``: ``conv k -> norm -> act`` -> attention -> 2x max pool keeping the indices
    (the tensor before pooling is the skip). Bottleneck: ``conv-norm-act`` -> attention.
    Decoder ``j``: unpool with the matching indices -> concatenate ``[skip, up]`` ->
    ``conv-norm-act`` -> attention. A 1x1 conv gives the logits: ``2*depth + 1`` attention
    modules.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        num_classes: output classes, background included.
        attention: a name of ``segattn.attention.available()``, ``None``, a class or a partial.
        attention_kwargs: options of every attention module.
        features: filters of every conv (the paper's 64).
        kernel_size: odd kernel size (the paper's 7).
        depth: encoder blocks / poolings (the paper's 3).
        dropout: channel dropout after every encoder and decoder block (0 disables it).
        norm: normalisation name.
        act: activation name.

    Raises:
        ValueError: bad sizes, depth, kernel, norm, activation, dropout or attention name.

    Example:
        >>> import torch
        >>> net = SDNet(3, 1, 4, attention="cse", features=8, kernel_size=3)
        >>> net(torch.randn(2, 1, 17, 19, 21)).shape
        torch.Size([2, 4, 17, 19, 21])
        >>> len(net.attention_modules())
        7
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        attention: AttentionSpec = None,
        attention_kwargs: Mapping[str, Any] | None = None,
        features: int = 64,
        kernel_size: int = 7,
        depth: int = 3,
        dropout: float = 0.0,
        norm: str | None = "batch",
        act: str | None = "prelu",
    ) -> None:
        super().__init__(spatial_dims, in_channels, num_classes, depth)
        width = check_positive_int("features", features)
        attend = attention_factory(attention, attention_kwargs, spatial_dims)
        self._set_config(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            attention=attention,
            attention_kwargs=dict(attention_kwargs or {}),
            features=width,
            kernel_size=kernel_size,
            depth=depth,
            dropout=float(dropout),
            norm=norm,
            act=act,
        )

        def block(c_in: int) -> ConvNormAct:
            return ConvNormAct(spatial_dims, c_in, width, kernel_size, norm, act)

        self._build(block, width, attend, dropout)
